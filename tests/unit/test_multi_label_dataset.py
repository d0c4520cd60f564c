"""The built-in multi-label dataset (yeast, from the river wheel) and the numeric-vector mode of
the one-vs-rest family."""

import io

import joblib
import numpy as np
import pytest

from labelloop.datasets import load
from labelloop.datasets.builtin import datasets_dir
from labelloop.datasets.multilabel import YEAST_ITEMS, YEAST_LABELS
from labelloop.retraining.multilabel import OvrFamily, numeric_width

fetched = pytest.mark.skipif(
    not (datasets_dir() / "yeast" / ".complete").is_file(), reason="yeast not fetched: run make setup"
)


@fetched
def test_yeast_has_its_genes_labels_and_anonymous_ids() -> None:
    records = load("yeast")
    assert len(records) == YEAST_ITEMS
    assert len({r["id"] for r in records}) == YEAST_ITEMS
    assert all(r["labels"] and set(r["labels"]) <= set(YEAST_LABELS) for r in records)
    assert all(r["label"] == "|".join(r["labels"]) for r in records)
    assert all(len(r["text"].split()) == 103 for r in records)
    assert not any("class" in r["id"].lower() or "gene" in r["id"] for r in records)
    # 4.24 categories per gene on average (MULAN's documented cardinality)
    assert np.mean([len(r["labels"]) for r in records]) == pytest.approx(4.237, abs=1e-3)
    assert load("yeast", 10) == records[:10]


def test_numeric_texts_are_modelled_as_vectors_and_survive_joblib() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    labels = [
        tuple(name for name, on in zip(["a", "b"], (row[0] > 0, row[1] > 0), strict=True) if on) for row in x
    ]
    texts = [" ".join(f"{v:.5f}" for v in row) for row in x]
    assert numeric_width(texts) == 5
    assert (
        numeric_width(["1 2", "3"]) is None
        and numeric_width(["1 x"]) is None
        and numeric_width(["7"]) is None
    )
    model = OvrFamily().fit(texts, labels, ["a", "b"])
    assert model.params["features"] == "numeric vector, standardised"
    buffer = io.BytesIO()
    joblib.dump(model.pipeline, buffer)
    buffer.seek(0)
    probs = joblib.load(buffer).predict_proba(["3 -3 0 0 0", "-3 3 0 0 0"])
    assert probs.shape == (2, 2)
    assert probs[0, 0] > 0.9 and probs[0, 1] < 0.1 and probs[1, 0] < 0.1 and probs[1, 1] > 0.9
