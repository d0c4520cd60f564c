"""Thresholds calibrated on the label model's posterior (core/label_model.held_out_posteriors,
retraining/posterior.py), on synthetic sources with known accuracies: the label model recovers
them, leaving an item's own answer out keeps its mistakes from explaining themselves, and a
threshold set on the posterior holds the target precision where one set on the model's
probabilities does not (the posterior of sources whose errors follow the model's is
overconfident)."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.core.label_model import LabelModel, combined_scores, held_out_posteriors
from labelloop.retraining.evaluation import calibrate

LABELS = ["a", "b", "c", "d", "e"]
TARGET = 0.95


def world(n: int, seed: int) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
    """n items: the truth, a model's probabilities (right 80% of the time, less sure when wrong),
    and two sources: a rule right 80% of the time on the 30% it covers, and an LLM
    right 85% of the time that, when the model is wrong, mostly repeats the model's mistake
    (dependent errors: what sources reading the same words do)."""
    rng = np.random.default_rng(seed)
    k = len(LABELS)
    truth_i = rng.integers(0, k, n)
    right = rng.random(n) < 0.8
    top = np.where(right, truth_i, (truth_i + rng.integers(1, k, n)) % k)
    logits = rng.normal(0, 0.6, (n, k))
    logits[np.arange(n), top] += np.where(right, rng.uniform(1.5, 5.0, n), rng.uniform(0, 2.0, n))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    votes: list[dict[str, str]] = []
    for i in range(n):
        cast: dict[str, str] = {}
        if rng.random() < 0.3:
            cast["rule:r"] = LABELS[
                truth_i[i] if rng.random() < 0.8 else (truth_i[i] + rng.integers(1, k)) % k
            ]
        if right[i]:
            llm = truth_i[i] if rng.random() < 0.92 else (truth_i[i] + rng.integers(1, k)) % k
        else:
            llm = top[i] if rng.random() < 0.6 else truth_i[i]
        cast["llm:m"] = LABELS[llm]
        votes.append(cast)
    return [LABELS[i] for i in truth_i], probs, votes


def learned(truth: list[str], votes: list[dict[str, str]]) -> LabelModel:
    model = LabelModel(LABELS)
    for label, cast in zip(truth, votes, strict=True):
        model.observe(cast, label, ["rule:r"])
    return model


def precision_above(probs: np.ndarray, truth: list[str], threshold: float) -> tuple[float, int]:
    top = probs.max(axis=1)
    admitted = top >= threshold
    right = np.asarray([LABELS[j] == t for j, t in zip(probs.argmax(axis=1), truth, strict=True)])
    return float(right[admitted].mean()) if admitted.any() else 1.0, int(admitted.sum())


def test_the_label_model_recovers_the_sources_accuracies() -> None:
    truth, _, votes = world(4000, 1)
    model = learned(truth, votes)
    assert model.accuracy("rule:r") == pytest.approx(0.8, abs=0.03)
    assert model.coverage("rule:r") == pytest.approx(0.3, abs=0.03)
    llm_right = np.mean([cast["llm:m"] == t for cast, t in zip(votes, truth, strict=True)])
    assert model.accuracy("llm:m") == pytest.approx(llm_right, abs=0.02)


def test_a_threshold_on_the_posterior_keeps_the_precision_one_on_the_model_loses() -> None:
    truth, probs, votes = world(3000, 2)
    model = learned(truth, votes)
    posterior, changed = held_out_posteriors(model, probs, votes, truth, min_judged=5)
    assert changed == len(truth)
    on_model = calibrate(probs, truth, LABELS, TARGET, 0.8).threshold
    on_posterior = calibrate(posterior, truth, LABELS, TARGET, 0.8).threshold
    # New items of the same world, routed on the posterior with the live label model.
    fresh_truth, fresh_probs, fresh_votes = world(6000, 3)
    routed = np.asarray(
        [
            combined_scores(model, cast, row.tolist(), 5) or row.tolist()
            for cast, row in zip(fresh_votes, fresh_probs, strict=True)
        ]
    )
    lax, lax_n = precision_above(routed, fresh_truth, on_model)
    kept, kept_n = precision_above(routed, fresh_truth, on_posterior)
    assert lax < TARGET - 0.02, (lax, lax_n)  # the bug this fixes
    assert kept >= TARGET - 0.01, (kept, kept_n)
    # and the posterior auto-labels more than the model alone at its own threshold
    alone, alone_n = precision_above(fresh_probs, fresh_truth, on_model)
    assert alone >= TARGET - 0.01 and kept_n > alone_n, (alone, alone_n, kept_n)


def test_leaving_the_item_out_keeps_a_mistake_from_explaining_itself() -> None:
    model = LabelModel(["a", "b"])
    for _ in range(20):
        model.observe({"rule:r": "a"}, "a")
    model.observe({"rule:r": "a"}, "b")  # its only wrong vote
    probs = np.asarray([[0.5, 0.5]])
    in_sample = model.posterior({"rule:r": "a"}, [0.5, 0.5])
    held_out, _ = held_out_posteriors(model, probs, [{"rule:r": "a"}], ["b"], min_judged=1)
    assert held_out[0, 0] > in_sample[0] > 0.5  # without its own count, "a" looks surer still


def test_rows_without_a_trusted_vote_keep_the_model_probabilities() -> None:
    model = LabelModel(LABELS)
    for _ in range(10):
        model.observe({"rule:tried": "a"}, "a")
    probs = np.full((3, 5), 0.2)
    votes = [{}, {"rule:untried": "b"}, {"model": "c", "rule:tried": "zzz"}]
    out, changed = held_out_posteriors(model, probs, votes, ["a", "b", "c"], min_judged=1)
    assert changed == 0
    np.testing.assert_array_equal(out, probs)
    lifted, changed = held_out_posteriors(model, probs, [{"rule:tried": "a"}] * 3, ["a", "b", "c"], 10)
    assert changed == 3 and (lifted[:, 0] > 0.2).all()
    _, none = held_out_posteriors(model, probs, [{"rule:tried": "a"}] * 3, ["a", "b", "c"], 11)
    assert none == 0


def test_mismatched_shapes_are_refused() -> None:
    model = LabelModel(LABELS)
    with pytest.raises(ValueError, match="labels"):
        held_out_posteriors(model, np.zeros((1, 3)), [{}], ["a"], 1)
    with pytest.raises(ValueError, match="one row per item"):
        held_out_posteriors(model, np.zeros((2, 5)), [{}], ["a"], 1)
