"""The offline study behind the cascade's combine (bench/cascade_combine.py), on a stream whose
answers are known: two words decide the class, so any family is always right."""

from __future__ import annotations

from labelloop.bench.cascade_combine import study
from labelloop.retraining.tfidf import TFIDF_FAMILY


def test_a_perfectly_separable_stream_is_admitted_whole_and_right() -> None:
    texts = [f"{word} item {i}" for i in range(200) for word in ("apple", "stone")]
    labels = ["fruit" if t.startswith("apple") else "rock" for t in texts]

    rows = study(texts, labels, families={"tfidf-lr": TFIDF_FAMILY}, sizes=(100, 400), draws=2)

    assert [(row["labels"], row["family"]) for row in rows] == [(100, "tfidf-lr")]  # 400 > first half
    row = rows[0]
    assert row["accuracy"] == 1.0 and row["oracle"] == 1.0
    assert row["precision"] == 1.0 and 0.5 < row["coverage"] <= 1.0
