"""Out-of-fold models are regularised per label as the served model (families.for_training_share):
with the same C, a model fitted on two thirds of the labels is held 1.5 times harder per label and
is less confident, so a threshold calibrated on its probabilities admitted more of the stream when
the served model applied it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from labelloop.retraining.cascade import CascadeFamily
from labelloop.retraining.evaluation import out_of_fold_probs
from labelloop.retraining.families import for_training_share
from labelloop.retraining.images import ImageFamily, ImageSvmFamily
from labelloop.retraining.multilabel import OvrFamily
from labelloop.retraining.tfidf import TFIDF_FAMILY


def test_each_regularised_family_divides_its_c_by_the_share() -> None:
    assert for_training_share(TFIDF_FAMILY, 2 / 3).c == pytest.approx(15.0)
    cascade = for_training_share(CascadeFamily(), 0.5)
    assert (cascade.fast.c, cascade.encoder.C) == (pytest.approx(20.0), pytest.approx(20.0))
    assert for_training_share(ImageFamily("/m"), 0.5).c == pytest.approx(0.2)
    svm = for_training_share(ImageSvmFamily("/m"), 0.8)
    assert isinstance(svm, ImageSvmFamily) and svm.c == pytest.approx(12.5)
    ovr = for_training_share(OvrFamily(), 0.5)
    assert (ovr.c, ovr.vector_c) == (pytest.approx(20.0), pytest.approx(2.0))
    assert for_training_share(TFIDF_FAMILY, 1.0) is TFIDF_FAMILY
    unregularised = object()
    assert for_training_share(unregularised, 0.5) is unregularised
    with pytest.raises(ValueError, match="share"):
        for_training_share(TFIDF_FAMILY, 0.0)


@dataclass(frozen=True)
class Recording:
    """A family that records the C and the number of labels of every fit."""

    name: str = "recording"
    c: float = 10.0
    fits: list[tuple[float, int]] = field(default_factory=list, compare=False)

    def with_training_share(self, share: float) -> Recording:
        return replace(self, c=self.c / share)

    def fit(self, texts, labels, label_set):
        self.fits.append((self.c, len(texts)))
        return TFIDF_FAMILY.fit(texts, labels, label_set)


def corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Two classes whose texts share most of their words: a model is unsure of many."""
    rng = np.random.default_rng(seed)
    common = [f"w{i}" for i in range(40)]
    own = {"a": [f"a{i}" for i in range(8)], "b": [f"b{i}" for i in range(8)]}
    texts, labels = [], []
    for i in range(n):
        y = "ab"[i % 2]
        words = list(rng.choice(common, 12)) + list(rng.choice(own[y], 2))
        texts.append(" ".join(words))
        labels.append(y)
    return texts, labels


def test_every_fold_model_is_regularised_as_one_fitted_on_all_the_labels() -> None:
    texts, labels = corpus(90, 1)
    family = Recording()
    _, valid = out_of_fold_probs(family, texts, labels, ["a", "b"], 3)
    assert valid.all()
    assert [n for _, n in family.fits] == [60, 60, 60]
    assert all(c == pytest.approx(10.0 * 90 / 60) for c, _ in family.fits)


def test_a_fold_model_so_regularised_is_as_confident_as_the_served_one() -> None:
    texts, labels = corpus(300, 2)
    new_texts, _ = corpus(400, 3)
    served = TFIDF_FAMILY.fit(texts, labels, ["a", "b"])
    part = slice(0, 200)  # a fold's two thirds
    same_c = TFIDF_FAMILY.fit(texts[part], labels[part], ["a", "b"])
    scaled = for_training_share(TFIDF_FAMILY, 200 / 300).fit(texts[part], labels[part], ["a", "b"])

    def confidence(model) -> float:
        return float(model.predict_proba(new_texts).max(axis=1).mean())

    gap_same, gap_scaled = confidence(served) - confidence(same_c), confidence(served) - confidence(scaled)
    assert gap_same > 0.01  # the fold model with the served C is less confident
    assert abs(gap_scaled) < gap_same / 2
