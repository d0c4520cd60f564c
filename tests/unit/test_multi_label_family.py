"""The one-vs-rest TF-IDF family and the multi-label metrics."""

import json

import numpy as np
import pytest

from labelloop.core import model_repository
from labelloop.retraining.multilabel import OvrFamily, indicator, multi_label_metrics

LABELS = ["sports", "politics", "tech"]


def corpus() -> tuple[list[str], list[tuple[str, ...]]]:
    texts, labels = [], []
    for i in range(60):
        words, on = [], []
        if i % 2 == 0:
            words.append("football match goal")
            on.append("sports")
        if i % 3 == 0:
            words.append("election senate vote")
            on.append("politics")
        if i % 5 == 0:
            words.append("software chip computer")
            on.append("tech")
        texts.append(" ".join(words) or "weather report rain")
        labels.append(tuple(on))
    return texts, labels


def test_each_label_gets_an_independent_probability(tmp_path) -> None:
    texts, labels = corpus()
    model = OvrFamily().fit(texts, labels, LABELS)
    probs = model.predict_proba(["football match goal election senate vote", "weather report rain"])
    assert probs.shape == (2, 3)
    assert probs[0, 0] > 0.5 and probs[0, 1] > 0.5 and probs[0, 2] < 0.5  # two labels at once
    assert (probs[1] < 0.5).all()  # and none
    assert probs[0].sum() > 1.0  # not a softmax
    version = model.write_version(tmp_path, "m", 1)
    meta = json.loads((version / model_repository.LABELS_FILE).read_text())
    assert meta["family"] == "sklearn-multilabel" and meta["labels"] == LABELS


def test_a_label_never_seen_gets_a_constant_low_probability() -> None:
    texts, labels = corpus()
    model = OvrFamily().fit(texts, labels, [*LABELS, "health"])
    assert (model.predict_proba(texts)[:, 3] < 0.5).all()


def test_metrics_on_a_known_case() -> None:
    truth = indicator([("sports",), ("sports", "tech"), ()], LABELS)
    probs = np.array([[0.9, 0.1, 0.1], [0.8, 0.2, 0.4], [0.1, 0.7, 0.1]])
    m = multi_label_metrics(probs, truth)
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 9)  # tech missed on item 2, politics wrong on 3
    # true positives 2 (sports x2), false positives 1, false negatives 1: F1 = 4 / (4 + 2)
    assert m["micro_f1"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        indicator([("weather",)], LABELS)


def test_exports_carry_label_lists(tmp_path) -> None:
    import pandas as pd

    from labelloop.cli.export import write_labels
    from labelloop.v1 import common_pb2, events_pb2

    def final(item_id: str, labels: list[str]) -> events_pb2.LabelFinalized:
        label = events_pb2.LabelFinalized(labels=labels, source=common_pb2.LABEL_SOURCE_HUMAN)
        label.ingested.item.item_id = item_id
        label.ingested.item.content.text = "t"
        return label

    labels = [final("1", ["sports", "tech"]), final("2", []), final("3", ["politics"])]
    write_labels(labels, tmp_path / "l.jsonl", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [(r["label"], json.loads(r["labels"])) for r in rows] == [
        ("sports|tech", ["sports", "tech"]),
        ("", []),
        ("politics", ["politics"]),
    ]
    write_labels(labels, tmp_path / "l.csv", "csv")
    frame = pd.read_csv(tmp_path / "l.csv", keep_default_na=False)
    assert [json.loads(x) for x in frame["labels"]] == [["sports", "tech"], [], ["politics"]]
