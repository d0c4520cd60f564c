"""Scoring candidates on held-out human labels, the promotion gate, and calibration data.

Pure functions (no Kafka, Redis, MLflow or Triton): the retraining service calls them from its
training worker; unit tests call them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold, StratifiedKFold

from labelloop.retraining.calibration import (
    Calibration,
    calibrate_threshold,
    coverage_at_precision,
    expected_calibration_error,
)
from labelloop.retraining.families import ModelFamily

__all__ = ["GateDecision", "best_candidate", "calibrate", "evaluate", "gate", "out_of_fold_probs"]


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


def best_candidate(candidate_metrics: Sequence[dict[str, float]], metric: str) -> int:
    """The index of the candidate with the highest held-out `metric`; ties (and no held-out
    labels at all) go to the earliest, i.e. the cheapest family."""
    scores = [m.get(metric, float("-inf")) for m in candidate_metrics]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may replace the champion, and why (logged to MLflow and `models`)."""

    promote: bool
    reason: str


def gate(
    candidate: dict[str, float], champion: dict[str, float] | None, metric: str, margin: float
) -> GateDecision:
    """Promote when there is no champion, or when the candidate's `metric` on the same held-out
    labels is at least the champion's minus `margin`. With no held-out labels, promote (there is
    nothing to compare on; the calibrated threshold still guards auto-labels)."""
    if champion is None:
        return GateDecision(True, "no champion yet")
    if metric not in candidate or metric not in champion:
        return GateDecision(True, "no held-out labels to compare on")
    new, old = candidate[metric], champion[metric]
    if new >= old - margin:
        return GateDecision(True, f"{metric} {new:.4f} vs champion {old:.4f} (margin {margin})")
    return GateDecision(
        False, f"{metric} {new:.4f} is worse than the champion's {old:.4f} by more than {margin}"
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
) -> Calibration:
    """The auto-accept thresholds for predictions like `probs` (held-out or out-of-fold
    predictions of human-labeled items whose labels are `truth`): global and per class, from the
    Clopper-Pearson lower bound (see calibration.calibrate_threshold)."""
    index = {label: i for i, label in enumerate(label_set)}
    y = np.asarray([index[t] for t in truth], dtype=np.int64)
    predicted = probs.argmax(axis=1) if len(truth) else np.zeros(0, dtype=np.int64)
    return calibrate_threshold(
        probs.max(axis=1) if len(truth) else np.zeros(0),
        predicted == y,
        target_precision,
        confidence_level=confidence_level,
        predicted_labels=[label_set[i] for i in predicted],
    )
