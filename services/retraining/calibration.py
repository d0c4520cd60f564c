"""Auto-accept thresholds calibrated to a target precision, and the metrics that describe them.

Called by the retraining service on promotion (with the held-out human labels of the promoted
model) and whenever audit results arrive; the thresholds it returns are what routing compares a
prediction's top probability with (``top >= threshold`` is auto-accepted).

Statistics: the precision of the items at or above a threshold is bounded from below with the
one-sided **Clopper-Pearson** (exact binomial) bound at ``confidence_level``; a threshold is
accepted only when that lower bound meets the target, not the point estimate. Audits are judged
with the matching one-sided Clopper-Pearson upper bound.

Convention shared with routing, the proto and the metrics: a threshold above 1 admits nothing.
:data:`ADMIT_NOTHING` (1.01) is that threshold: finite, so it survives JSON, Redis, Prometheus and
MLflow unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import beta

__all__ = [
    "ADMIT_NOTHING",
    "AuditDecision",
    "Calibration",
    "calibrate_threshold",
    "coverage_at_precision",
    "expected_calibration_error",
    "precision_lower_bound",
    "precision_upper_bound",
    "tighten_from_audits",
]

#: The threshold that admits nothing (any value above 1 does; this is the one Labelloop writes).
ADMIT_NOTHING = 1.01


def precision_lower_bound(
    correct: ArrayLike, total: ArrayLike, confidence_level: float = 0.95
) -> NDArray[np.float64]:
    """One-sided Clopper-Pearson lower bound of a binomial proportion ``correct / total``.

    Vectorized; 0 where ``correct`` is 0 or ``total`` is 0.
    """
    k = np.asarray(correct, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    alpha = 1.0 - confidence_level
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(alpha, k, n - k + 1.0)
    return np.where((k > 0) & (n > 0), np.nan_to_num(bound, nan=0.0), 0.0).astype(np.float64)


def precision_upper_bound(
    correct: ArrayLike, total: ArrayLike, confidence_level: float = 0.95
) -> NDArray[np.float64]:
    """One-sided Clopper-Pearson upper bound of a binomial proportion ``correct / total``.

    Vectorized; 1 where ``correct == total`` or ``total`` is 0.
    """
    k = np.asarray(correct, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(confidence_level, k + 1.0, n - k)
    return np.where((k < n) & (n > 0), np.nan_to_num(bound, nan=1.0), 1.0).astype(np.float64)


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`calibrate_threshold`.

    ``threshold`` is the global threshold (:data:`ADMIT_NOTHING` when no threshold is safe);
    ``class_thresholds`` holds a threshold for each predicted class with enough held-out items of
    its own, overriding the global one for items predicted as that class (see :meth:`threshold_for`);
    ``expected_coverage`` is the share of the calibration items that these thresholds admit;
    ``precision`` and ``precision_lower_bound`` are the point estimate and lower bound of the
    precision of the items the global threshold admits (``None`` when it admits nothing);
    ``n`` is the number of calibration items.
    """

    threshold: float
    class_thresholds: dict[str, float] = field(default_factory=dict)
    expected_coverage: float = 0.0
    precision: float | None = None
    precision_lower_bound: float | None = None
    n: int = 0

    @property
    def admits_nothing(self) -> bool:
        """True when no item can be auto-accepted under this calibration."""
        return self.threshold > 1.0 and all(t > 1.0 for t in self.class_thresholds.values())

    def threshold_for(self, predicted_label: str) -> float:
        """The threshold for an item whose top class is ``predicted_label``."""
        return self.class_thresholds.get(predicted_label, self.threshold)


def _as_arrays(confidences: ArrayLike, correct: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=bool).ravel()
    if conf.shape != ok.shape:
        raise ValueError(f"confidences and correct differ in length: {conf.size} vs {ok.size}")
    if conf.size and (not np.all(np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0):
        raise ValueError("confidences must be probabilities in [0, 1]")
    return conf, ok


def _precision_curve(
    conf: NDArray[np.float64], ok: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Candidate thresholds (distinct confidences, descending) with the count and correct count at or above each."""
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    cum_correct = np.cumsum(ok[order], dtype=np.int64)
    # Last index of each run of equal confidences: items tied with a threshold are all admitted.
    last_of_run = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    return sorted_conf[last_of_run], (last_of_run + 1).astype(np.int64), cum_correct[last_of_run]


def _lowest_safe_threshold(
    conf: NDArray[np.float64], ok: NDArray[np.bool_], target: float, confidence_level: float
) -> tuple[float, float | None, float | None]:
    """(threshold, precision, lower bound) of the lowest threshold whose lower bound meets the target."""
    if conf.size == 0:
        return ADMIT_NOTHING, None, None
    thresholds, n_above, k_above = _precision_curve(conf, ok)
    lower = precision_lower_bound(k_above, n_above, confidence_level)
    safe = np.flatnonzero(lower >= target)
    if safe.size == 0:
        return ADMIT_NOTHING, None, None
    i = int(safe[-1])  # thresholds are descending: the last safe one is the lowest
    return float(thresholds[i]), float(k_above[i] / n_above[i]), float(lower[i])


def calibrate_threshold(
    confidences: ArrayLike,
    correct: ArrayLike,
    target_precision: float,
    confidence_level: float = 0.95,
    min_samples: int = 50,
    predicted_labels: Sequence[str] | None = None,
    min_class_samples: int = 100,
) -> Calibration:
    """The lowest auto-accept threshold whose precision meets ``target_precision`` with confidence.

    ``confidences[i]`` is the model's top probability on held-out item ``i`` and ``correct[i]``
    whether its top class matched the human label. The global threshold is the lowest observed
    confidence ``t`` such that the one-sided Clopper-Pearson lower bound (at ``confidence_level``)
    of the precision of the items with confidence ``>= t`` is at least the target. When there are
    fewer than ``min_samples`` items, or no such ``t`` exists, the threshold is
    :data:`ADMIT_NOTHING`. Note that with target 0.95 at level 0.95 even a perfect model needs at
    least 59 items at or above a threshold, so small held-out sets admit nothing by design.

    With ``predicted_labels`` (each item's top class), each class predicted for at least
    ``min_class_samples`` items gets its own threshold by the same rule on its items only; a class
    whose own items admit nothing gets :data:`ADMIT_NOTHING`.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level}")
    conf, ok = _as_arrays(confidences, correct)
    n = int(conf.size)
    if n < max(1, min_samples):
        return Calibration(threshold=ADMIT_NOTHING, n=n)
    threshold, precision, lower = _lowest_safe_threshold(conf, ok, target_precision, confidence_level)

    class_thresholds: dict[str, float] = {}
    admitted = conf >= threshold
    if predicted_labels is not None:
        predicted = np.asarray(list(predicted_labels), dtype=object)
        if predicted.shape != conf.shape:
            raise ValueError(f"predicted_labels has {predicted.size} items, confidences {n}")
        for label in sorted(set(predicted.tolist())):
            mask = predicted == label
            if int(mask.sum()) < min_class_samples:
                continue
            class_threshold, _, _ = _lowest_safe_threshold(
                conf[mask], ok[mask], target_precision, confidence_level
            )
            class_thresholds[str(label)] = class_threshold
            admitted[mask] = conf[mask] >= class_threshold
    return Calibration(
        threshold=threshold,
        class_thresholds=class_thresholds,
        expected_coverage=float(admitted.mean()),
        precision=precision,
        precision_lower_bound=lower,
        n=n,
    )


@dataclass(frozen=True)
class AuditDecision:
    """The outcome of :func:`tighten_from_audits`: the threshold to use from now on and why."""

    threshold: float
    tightened: bool
    audited_precision: float | None
    precision_upper_bound: float | None
    reason: str


def tighten_from_audits(
    current_threshold: float,
    audited_correct: int,
    audited_total: int,
    target_precision: float,
    confidence_level: float = 0.9,
    min_audits: int = 20,
    shrink: float = 0.5,
) -> AuditDecision:
    """Decide from audits of auto-labels whether the threshold must be stricter, at once.

    ``audited_correct`` of ``audited_total`` audited auto-labels (accepted under
    ``current_threshold``; the caller resets its counts when the threshold changes) matched the
    people's label. Rule: with at least ``min_audits`` audits, when the one-sided Clopper-Pearson
    upper bound of the audited precision at ``confidence_level`` is below the target (the data say
    precision is below target, not just noise), the threshold moves ``shrink`` of the way to 1:
    ``t + shrink * (1 - t)``. If even a threshold of 1 cannot be trusted (the audited precision is
    below half the target), it becomes :data:`ADMIT_NOTHING` until the next calibration.
    Otherwise the threshold is unchanged. A threshold that already admits nothing stays.
    """
    if audited_total < 0 or not 0 <= audited_correct <= audited_total:
        raise ValueError(f"need 0 <= audited_correct <= audited_total, got {audited_correct}/{audited_total}")
    if not 0.0 < shrink <= 1.0:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    if current_threshold > 1.0:
        return AuditDecision(current_threshold, False, None, None, "threshold already admits nothing")
    if audited_total == 0:
        return AuditDecision(current_threshold, False, None, None, "no audits yet")
    precision = audited_correct / audited_total
    upper = float(precision_upper_bound(audited_correct, audited_total, confidence_level))
    if audited_total < min_audits:
        return AuditDecision(
            current_threshold, False, precision, upper, f"{audited_total} audits, fewer than {min_audits}"
        )
    if upper >= target_precision:
        return AuditDecision(
            current_threshold,
            False,
            precision,
            upper,
            f"audited precision {precision:.3f} (upper bound {upper:.3f}) is consistent with {target_precision}",
        )
    if precision < target_precision / 2 or current_threshold >= 1.0:
        new_threshold = ADMIT_NOTHING
    else:
        new_threshold = min(1.0, current_threshold + shrink * (1.0 - current_threshold))
    return AuditDecision(
        new_threshold,
        True,
        precision,
        upper,
        f"audited precision {precision:.3f} ({audited_correct}/{audited_total}, upper bound {upper:.3f}) "
        f"is below the target {target_precision}: threshold {current_threshold:.4f} -> {new_threshold:.4f}",
    )


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, with ``n_bins`` equal-width bins.

    ``probs`` is an ``(n, k)`` matrix of class probabilities, ``labels`` the ``n`` true class
    indices (columns of ``probs``). Returns ``sum_b |accuracy_b - confidence_b| * n_b / n`` over
    bins ``(i/n_bins, (i+1)/n_bins]``; 0.0 for no items.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).ravel()
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"probs must be (n, k) with n = len(labels); got {p.shape} and {y.size}")
    if y.size == 0:
        return 0.0
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(bins, weights=hit, minlength=n_bins)
    return float(np.abs(hit_sum - conf_sum).sum() / y.size)


def coverage_at_precision(confidences: ArrayLike, correct: ArrayLike, target_precision: float) -> float:
    """The largest share of items a single threshold can auto-accept with precision >= target.

    A point estimate on the given items (no statistical margin; for the MLflow metric "expected
    auto-label coverage at the target precision"). 0.0 when no threshold reaches the target.
    """
    conf, ok = _as_arrays(confidences, correct)
    if conf.size == 0:
        return 0.0
    _, n_above, k_above = _precision_curve(conf, ok)
    reach = np.flatnonzero(k_above >= target_precision * n_above - 1e-9)
    return 0.0 if reach.size == 0 else float(n_above[reach[-1]] / conf.size)
