"""Scoring candidates on held-out human labels, the promotion gate, and calibration data.

Pure functions (no Kafka, Redis, MLflow or Triton): the retraining service calls them from its
training worker; unit tests call them directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold, StratifiedKFold

from labelloop.core.consensus_noise import corrected_scores
from labelloop.retraining.calibration import (
    Calibration,
    calibrate_threshold,
    coverage_at_precision,
    expected_calibration_error,
)
from labelloop.retraining.families import ModelFamily

__all__ = [
    "GateDecision",
    "best_candidate",
    "calibrate",
    "calibrate_rescores",
    "evaluate",
    "gate",
    "out_of_fold_probs",
]


def evaluate(
    probs: np.ndarray, truth: Sequence[str], label_set: Sequence[str], target_precision: float
) -> dict[str, float]:
    """Metrics of `probs` (rows: items, columns: `label_set`) against the human labels `truth`:
    accuracy, macro_f1 (over the classes present in truth or predictions), ece, and
    expected_coverage (share auto-acceptable at `target_precision`, point estimate), n."""
    if len(truth) == 0:
        return {"n": 0.0}
    index = {label: i for i, label in enumerate(label_set)}
    y = np.asarray([index[t] for t in truth])
    predicted = probs.argmax(axis=1)
    correct = predicted == y
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "ece": expected_calibration_error(probs, y),
        "expected_coverage": coverage_at_precision(probs.max(axis=1), correct, target_precision),
        "n": float(len(truth)),
    }


def best_candidate(candidate_metrics: Sequence[dict[str, float]], metric: str, *then: str) -> int:
    """The index of the candidate with the highest held-out `metric`, ties broken by the metrics
    in `then`, in order; remaining ties (and no held-out labels at all) go to the earliest, i.e.
    the cheapest family. The service ranks by ``expected_coverage`` (what a family is for: the
    share it may auto-label at the target precision), then by the gate metric."""
    keys = (metric, *then)
    scores = [tuple(m.get(k, float("-inf")) for k in keys) for m in candidate_metrics]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may replace the champion, and why (logged to MLflow and `models`)."""

    promote: bool
    reason: str


#: How many standard errors of the champion's held-out score a candidate may fall short by.
GATE_NOISE_Z = 2.0


def gate(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    metric: str,
    margin: float,
    *,
    candidate_admits: bool = True,
    champion_admits: bool = False,
) -> GateDecision:
    """Promote when there is no champion, or when the candidate's `metric` on the same held-out
    labels is at least the champion's minus a tolerance: `margin`, or the noise of a score on
    `n` held-out labels (:data:`GATE_NOISE_Z` binomial standard errors of the champion's score, smoothed)
    when that is larger. Early held-out sets are tiny (10 labels at the first retraining), and
    one item there is 10 points: a fixed margin kept weak first models serving against better
    candidates trained on more labels. With no held-out labels, promote (there is nothing to
    compare on; the calibrated threshold still guards auto-labels).

    Where the metric would promote, a candidate whose calibrated threshold admits nothing
    (``candidate_admits`` false) does not replace a champion whose serving threshold admits
    something (``champion_admits``): that threshold is still checked by audits and moved both
    ways by people's answers, while the candidate would send every item to people until the
    next training. On a few hundred labels the bound at the target often clears for one training
    and not the next (Fashion-MNIST: a version on 182 labels auto-labeled 47% of its items, 0.964
    right; the two after it, on 287 and 388 labels, admitted nothing and sent all their 102 items
    to people)."""
    if champion is None:
        return GateDecision(True, "no champion yet")
    decision = _metric_gate(candidate, champion, metric, margin)
    if decision.promote and champion_admits and not candidate_admits:
        return GateDecision(
            False, "its calibrated threshold admits nothing at the target while the champion's admits"
        )
    return decision


def _metric_gate(
    candidate: dict[str, float], champion: dict[str, float], metric: str, margin: float
) -> GateDecision:
    """The gate on `metric` alone (see :func:`gate`)."""
    if metric not in candidate or metric not in champion:
        return GateDecision(True, "no held-out labels to compare on")
    new, old = candidate[metric], champion[metric]
    n = candidate.get("n", 0.0)
    # The standard error with one success and one failure added, so a perfect score on a few
    # labels still counts as uncertain (Laplace / Agresti-Coull-style smoothing).
    smoothed = (old * n + 1.0) / (n + 2.0)
    noise = GATE_NOISE_Z * math.sqrt(smoothed * (1.0 - smoothed) / n) if n > 0 else 0.0
    tolerance = max(margin, noise)
    if new >= old - tolerance:
        return GateDecision(
            True, f"{metric} {new:.4f} vs champion {old:.4f} (tolerance {tolerance:.4f} on {n:.0f} labels)"
        )
    return GateDecision(
        False,
        f"{metric} {new:.4f} is worse than the champion's {old:.4f} by more than {tolerance:.4f} "
        f"(margin {margin}, or the noise of {n:.0f} held-out labels)",
    )


def out_of_fold_probs(
    family: ModelFamily,
    texts: Sequence[str],
    labels: Sequence[str],
    label_set: Sequence[str],
    folds: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities for each training item from a model of `family` that did not see it
    (k-fold, stratified when every class has `folds` items). Returns (probs, valid): rows of
    folds whose training part had fewer than two classes are not valid (all zeros)."""
    n = len(texts)
    probs = np.zeros((n, len(label_set)))
    valid = np.zeros(n, dtype=bool)
    k = min(folds, n)
    if k < 2:
        return probs, valid
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    splitter = (
        StratifiedKFold(k, shuffle=True, random_state=seed)
        if counts.min() >= k
        else KFold(k, shuffle=True, random_state=seed)
    )
    text_array = np.asarray(texts, dtype=object)
    label_array = np.asarray(labels, dtype=object)
    for train_idx, test_idx in splitter.split(text_array, label_array):
        if len(set(label_array[train_idx].tolist())) < 2:
            continue
        model = family.fit(text_array[train_idx].tolist(), label_array[train_idx].tolist(), label_set)
        probs[test_idx] = model.predict_proba(text_array[test_idx].tolist())
        valid[test_idx] = True
    return probs, valid


def calibrate(
    probs: np.ndarray,
    truth: Sequence[str],
    label_set: Sequence[str],
    target_precision: float,
    confidence_level: float,
    weights: Sequence[float] | None = None,
    max_weight: float | None = None,
    label_probability: Sequence[float] | None = None,
) -> Calibration:
    """The auto-accept thresholds for predictions like `probs` (held-out or out-of-fold
    predictions of human-labeled items whose labels are `truth`, each weighted by the inverse of
    the probability it was sent to people, capped at `max_weight`): global and per class, from the
    weighted Clopper-Pearson lower bound (see calibration.calibrate_threshold). With
    `label_probability` (each label's probability of being right, core/consensus_noise.py), each
    prediction is scored by its noise-corrected score instead of right/wrong."""
    index = {label: i for i, label in enumerate(label_set)}
    y = np.asarray([index[t] for t in truth], dtype=np.int64)
    predicted = probs.argmax(axis=1) if len(truth) else np.zeros(0, dtype=np.int64)
    correct: np.ndarray = predicted == y
    if label_probability is not None:
        correct = corrected_scores(correct, np.asarray(label_probability, dtype=np.float64))
    return calibrate_threshold(
        probs.max(axis=1) if len(truth) else np.zeros(0),
        correct,
        target_precision,
        confidence_level=confidence_level,
        predicted_labels=[label_set[i] for i in predicted],
        weights=None
        if weights is None
        else np.minimum(np.asarray(weights, dtype=np.float64), max_weight or np.inf),
    )


def calibrate_rescores(
    probs: np.ndarray,
    truth: Sequence[str],
    label_set: Sequence[str],
    target_precision: float,
    confidence_level: float,
    weights: Sequence[float],
    label_probability: Sequence[float] | None = None,
) -> Calibration:
    """The thresholds a waiting task's new prediction must also reach to be auto-labeled and
    withdrawn from people (a deploy's rescore). Those tasks are items routing sent to people
    with probability 1: an earlier model was unsure of them (or none served). The labels of
    such items (weight 1; explored and audited ones weigh more) are a sample of that population,
    so these thresholds are calibrated on them alone, unweighted, as :func:`calibrate` does on
    the whole sample. The whole sample stands for the stream, where a model is right more often
    on what it is sure of than on what an earlier model was unsure of: withdrawn auto-labels ran
    at 0.86-0.96 where the rest ran at 0.94-0.98 (README, Benchmarks)."""
    keep = np.asarray(weights, dtype=np.float64) <= 1.0 + 1e-9
    return calibrate(
        probs[keep],
        [t for t, k in zip(truth, keep, strict=True) if k],
        label_set,
        target_precision,
        confidence_level,
        label_probability=None
        if label_probability is None
        else [p for p, k in zip(label_probability, keep, strict=True) if k],
    )
