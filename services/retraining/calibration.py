"""Auto-accept thresholds calibrated to a target precision on an unbiased sample, and the
metrics that describe them.

Called by the retraining service (the model lifecycle, the only writer of thresholds): on each
training, with out-of-fold predictions of every human label; and whenever people answer tasks of
the serving model, to move its threshold both ways. Routing compares a prediction's top
probability with the result (``top >= threshold`` is auto-accepted).

Statistics (README, "How thresholds are set"):

* **The sample and its weights.** The threshold is applied to the whole stream, but people label
  mostly the items the model was unsure of; calibrating on those alone is biased (it shows the
  model worse than it is where it is good, and says nothing of the confident region). So every
  human label carries the probability ``pi`` with which routing sent that item to people: 1 for an
  item below the threshold (or with no model), and ``exploration_rate + audit_rate`` for an item
  above it (a hash of the item id decides, so ``pi`` is known exactly). Weighting each label by
  ``1 / pi`` (Horvitz-Thompson) makes weighted sums over the human labels unbiased estimates of
  the same sums over the stream, for any model scored on them afterwards (the selection depends
  only on the model that routed the item, never on the label).
* **The bound.** For a candidate threshold ``t`` the precision of the items at or above it is the
  weighted share of correct ones, ``p = sum(w * ok) / sum(w)``. Its uncertainty comes from the
  Kish effective sample size ``n_eff = sum(w)^2 / sum(w^2)``; the one-sided Clopper-Pearson bound
  is taken with ``p * n_eff`` successes in ``n_eff`` trials (Korn & Graubard's approximation for
  weighted proportions). With all weights 1 this is the exact Clopper-Pearson bound. The
  threshold is the lowest ``t`` whose lower bound at ``confidence_level`` meets the target.
* **Noisy labels.** ``correct`` may hold, instead of right/wrong, each prediction's score against
  a label that is itself right only with probability ``pi`` (k noisy people per task:
  core/consensus_noise.py); the weighted mean of scores estimates precision as the share of right ones
  does, and each weight enters Kish's size multiplied by the score's spread ``|2 ok - 1|`` (1 for
  right/wrong), so the bound widens with the noise.
* **Per class.** A class predicted for enough calibration items gets its own threshold; the
  global one serves the rest. Either each group (a class, the rest) meets the bound on its own
  items, or every group takes the lowest threshold whose point precision reaches one common level
  ``q >= target`` and the union of what they admit meets the bound; whichever admits more is kept
  (:func:`calibrate_threshold`). The promise is the precision of all auto-labels, and the second
  way lets a class with few items admit what is as good as the rest (each class still meets the
  target as a point estimate).
* **Moving both ways.** Between trainings, the answers people give to the serving model's tasks
  (uncertain items with ``pi = 1``; audits and exploration items with their rates) form a fresh
  weighted sample of that model's confidences. :func:`move_threshold` tightens when the upper
  bound of the precision admitted by the current threshold is below the target, and loosens when
  a lower threshold's lower bound meets it: precision then sits near the target, not far above.
  A move shifts the global and every per-class threshold by one step, so it is judged on each
  answer's margin over the threshold that applied to it (its class's, else the global one).

Multi-label projects (:func:`calibrate_label_bounds`, README "Multi-label thresholds"): each
label gets an upper threshold ("on" is confident at or above it) and a lower one ("off" is
confident at or below it), and an item is auto-labeled only when every label is confident. The
promise is the exact-match precision of auto-labels (every label right). It is calibrated
directly on that joint event, not assembled from per-label guarantees: per-label precisions on
different subsets do not bound the precision of their intersection (conditioning on the other
labels being confident can concentrate one label's errors). So the per-label pairs only shape the
auto-label region, through one error budget ``delta`` shared by every label decision: at budget
``delta`` each label's upper threshold is the lowest whose weighted "on" precision is at least
``1 - delta`` (and its lower threshold likewise for "off"), so a label the model knows well gets
wide confident zones and a hard label narrow ones. The union bound motivates the budgets tried
(exact-match errors are at most the sum of the K labels' errors, so ``delta`` runs from
``2 * (1 - target)`` down past ``(1 - target) / K`` to 0); the budget kept is the one whose region
admits the most weight among those whose *joint* lower bound (the same weighted one-sided
Clopper-Pearson bound as above, on "all labels right" over the items the region admits) meets the
target. Choosing among a dozen regions on one sample is the same kind of choice the single-label
threshold makes among all candidate thresholds. Between trainings the pairs move both ways on
people's answers (:func:`move_label_bounds`): one step added to every upper threshold and taken
from every lower one, judged on each answer's margin inside its confident zones and on exact
match, with the same bounds and rules as :func:`move_threshold`.

Known approximations: a waiting task that a newer model auto-labels is withdrawn (rescore), so an
item below the old threshold reached people with a probability under the 1 it carries. Where the
stream outruns people this is not slight: people answer the waiting tasks by priority (the prior's
most typical items first in its class rounds, three since session 10, then the smallest
margins), and in a BBC News bench run (100 waiting items) 173 auto-labels came from withdrawn
tasks while 212 tasks were answered. Withdrawn auto-labels are audited under routing's draw as
any auto-label is (routing/router.py), so their audits weigh ``1 / (exploration + audit)`` (capped)
and move the serving threshold; at a 2% audit rate that is a handful of answers per stream, so
the withdrawn region stays thinly sampled. A withdrawal must also reach thresholds calibrated on the labels of
items people got with probability 1 alone (``evaluation.calibrate_rescores``): the population
waiting tasks come from, where a model's confidence is less reliable than on the stream. The first 88 labels
of that run were easier for the model than a random 88 (out-of-fold precision 0.98 above the
threshold that then served at 0.92, against 0.89-0.97 in 12 random samples): the threshold is
optimistic (README, Benchmarks, "Where the targets stand"). Out-of-fold models fitted on two thirds
of the labels are also less confident than the served one (in 11 of 12 such random samples the
served model admitted more of the stream than calibrated); 10 folds instead of 3 did not cure the
run's misses. Weights are trimmed (``max_weight`` in ``evaluation.calibrate``), which leans the
estimate toward the unit-weight items people were asked about: the safe side while those are the
harder ones. Choosing the lowest safe threshold, and the common level among about twenty, on the
same sample that checks them is optimistic by the selection, as any threshold chosen on its own
sample is: the bound's margin absorbs it (measured: the table of the README's Benchmarks). In the
queue replay of BBC News, TF-IDF alone held the target where the choice between two families (in
``training.py``) did not; correcting the choice alone did not help, and calibrating every family
at level ``1 - (1 - level) / 2`` did but cost people's share on the streams where the reference is
close, so it is not done (README, "Where the targets stand").

Convention shared with routing, the proto and the metrics: a threshold above 1 admits nothing.
:data:`ADMIT_NOTHING` is that threshold, the one sentinel `core/thresholds.NOTHING` (2.0): finite,
so it survives JSON, Redis, Prometheus and MLflow unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import beta

from labelloop.core.thresholds import NOTHING

__all__ = [
    "ADMIT_NOTHING",
    "NEVER_OFF",
    "Calibration",
    "LabelBounds",
    "LabelBoundsMove",
    "ThresholdMove",
    "calibrate_label_bounds",
    "calibrate_threshold",
    "coverage_at_precision",
    "expected_calibration_error",
    "exploration_rate",
    "move_label_bounds",
    "move_threshold",
    "precision_lower_bound",
    "precision_upper_bound",
]

#: The threshold that admits nothing (any value above 1 does; this is the one Labelloop writes).
ADMIT_NOTHING = NOTHING
#: The lower threshold of a multi-label label whose "off" is never confident (below any probability).
NEVER_OFF = -1.0


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
    ``precision`` and ``precision_lower_bound`` are the point estimate and lower bound that
    decided: of the items the global threshold admits, or of all admitted items when one
    precision level for every class was kept (``None`` when nothing is admitted);
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


def _as_arrays(
    confidences: ArrayLike, correct: ArrayLike, weights: ArrayLike | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    # Right/wrong, or a noise-corrected score per item (consensus_noise.corrected_scores).
    ok = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != ok.shape:
        raise ValueError(f"confidences and correct differ in length: {conf.size} vs {ok.size}")
    if ok.size and not np.all(np.isfinite(ok)):
        raise ValueError("correct must be finite (booleans or corrected scores)")
    if conf.size and (not np.all(np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0):
        raise ValueError("confidences must be probabilities in [0, 1]")
    w = np.ones_like(conf) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != conf.shape:
        raise ValueError(f"weights and confidences differ in length: {w.size} vs {conf.size}")
    if w.size and (not np.all(np.isfinite(w)) or w.min() <= 0.0):
        raise ValueError("weights must be positive and finite (1 / selection probability)")
    return conf, ok, w


@dataclass(frozen=True)
class _Curve:
    """Per candidate threshold (distinct confidences, descending): raw count, weighted precision
    and Kish effective sample size of the items at or above it."""

    thresholds: NDArray[np.float64]
    count: NDArray[np.int64]
    precision: NDArray[np.float64]
    n_eff: NDArray[np.float64]

    def lower(self, confidence_level: float) -> NDArray[np.float64]:
        return precision_lower_bound(self.precision * self.n_eff, self.n_eff, confidence_level)

    def upper(self, confidence_level: float) -> NDArray[np.float64]:
        return precision_upper_bound(self.precision * self.n_eff, self.n_eff, confidence_level)

    def at(self, threshold: float) -> int | None:
        """Index of the curve point that admits exactly the items with confidence >= threshold."""
        admitted = np.flatnonzero(self.thresholds >= threshold)
        return None if admitted.size == 0 else int(admitted[-1])


def _spread_weights(
    w: NDArray[np.float64], ok: NDArray[np.float64] | NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Each item's weight times its score's spread ``|2 ok - 1|``: 1 for a plain right/wrong, ``1 /
    (2 pi - 1)`` for a noise-corrected score (core/consensus_noise.py). The Kish effective size is
    ``sum(w)^2 / sum((w * spread)^2)``: a corrected score varies more than a right/wrong does."""
    return w * np.abs(2.0 * ok - 1.0)


def _precision_curve(
    conf: NDArray[np.float64], ok: NDArray[np.float64] | NDArray[np.bool_], w: NDArray[np.float64]
) -> _Curve:
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    ws = w[order]
    cum_w = np.cumsum(ws)
    cum_wk = np.cumsum(ws * ok[order])
    cum_w2 = np.cumsum(_spread_weights(ws, ok[order]) ** 2)
    # Last index of each run of equal confidences: items tied with a threshold are all admitted.
    last = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    return _Curve(
        thresholds=sorted_conf[last],
        count=(last + 1).astype(np.int64),
        precision=np.clip(cum_wk[last] / cum_w[last], 0.0, 1.0),
        n_eff=cum_w[last] ** 2 / cum_w2[last],
    )


def _lowest_safe_threshold(
    conf: NDArray[np.float64],
    ok: NDArray[np.float64],
    w: NDArray[np.float64],
    target: float,
    confidence_level: float,
) -> tuple[float, float | None, float | None]:
    """(threshold, precision, lower bound) of the lowest threshold whose lower bound meets the target."""
    if conf.size == 0:
        return ADMIT_NOTHING, None, None
    curve = _precision_curve(conf, ok, w)
    lower = curve.lower(confidence_level)
    safe = np.flatnonzero(lower >= target)
    if safe.size == 0:
        return ADMIT_NOTHING, None, None
    i = int(safe[-1])  # thresholds are descending: the last safe one is the lowest
    return float(curve.thresholds[i]), float(curve.precision[i]), float(lower[i])


def calibrate_threshold(
    confidences: ArrayLike,
    correct: ArrayLike,
    target_precision: float,
    confidence_level: float = 0.95,
    min_samples: int = 50,
    predicted_labels: Sequence[str] | None = None,
    min_class_samples: int = 100,
    weights: ArrayLike | None = None,
) -> Calibration:
    """The lowest auto-accept threshold whose precision meets ``target_precision`` with confidence.

    ``confidences[i]`` is the model's top probability on held-out (or out-of-fold) item ``i``,
    ``correct[i]`` whether its top class matched the human label, and ``weights[i]`` the inverse
    of the probability that item was sent to people (1 when omitted; see the module doc). The
    global threshold is the lowest observed confidence ``t`` such that the one-sided lower bound
    (at ``confidence_level``) of the weighted precision of the items with confidence ``>= t`` is
    at least the target. When there are fewer than ``min_samples`` items, or no such ``t`` exists,
    the threshold is :data:`ADMIT_NOTHING`. With unit weights, target 0.95 at level 0.95 even a
    perfect model needs at least 59 items at or above a threshold.

    With ``predicted_labels`` (each item's top class), each class predicted for at least
    ``min_class_samples`` items gets its own threshold, and the global threshold serves the other
    classes only (set on their items when they number at least ``min_samples``, else on all): the
    classes people label most are the hard ones, and a global threshold set on all items would
    hold the easy classes to their precision. Two ways of setting these groups' thresholds are
    compared, and the one that admits the most weight is kept:

    * **each group on its own bound**: the rule above on the group's items alone (a group whose
      items admit nothing gets :data:`ADMIT_NOTHING`); each group meets the bound, so their union
      does;
    * **one precision level for every group** (:func:`_pooled_thresholds`): for a level ``q``
      from 1 down to the target, each group's threshold is the lowest whose weighted point
      precision on its items is at least ``q``, and the level kept is the lowest whose union of
      admitted items has its lower bound at or above the target. The promise is the precision of
      all auto-labels; a small class need not prove it alone (its few items give a wide bound and
      admit nothing) when its admitted items are as good as the rest's, and every class still
      meets the target as a point estimate.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level}")
    conf, ok, w = _as_arrays(confidences, correct, weights)
    n = int(conf.size)
    if n < max(1, min_samples):
        return Calibration(threshold=ADMIT_NOTHING, n=n)
    threshold, precision, lower = _lowest_safe_threshold(conf, ok, w, target_precision, confidence_level)
    if predicted_labels is None:
        admitted = conf >= threshold
        return Calibration(
            threshold=threshold,
            expected_coverage=float(w[admitted].sum() / w.sum()),
            precision=precision,
            precision_lower_bound=lower,
            n=n,
        )
    predicted = np.asarray(list(predicted_labels), dtype=object)
    if predicted.shape != conf.shape:
        raise ValueError(f"predicted_labels has {predicted.size} items, confidences {n}")
    masks = {str(label): predicted == label for label in sorted(set(predicted.tolist()))}
    groups = {label: mask for label, mask in masks.items() if int(mask.sum()) >= min_class_samples}
    rest = np.ones(n, dtype=bool)
    for mask in groups.values():
        rest &= ~mask
    # The global threshold serves the classes without their own: calibrate it on their items when
    # there are enough, not on a sample the hard classes (the most labeled) dominate.
    rest_is_own = bool(groups) and int(rest.sum()) >= max(1, min_samples)
    if rest_is_own:
        threshold, precision, lower = _lowest_safe_threshold(
            conf[rest], ok[rest], w[rest], target_precision, confidence_level
        )
    class_thresholds = {
        label: _lowest_safe_threshold(conf[mask], ok[mask], w[mask], target_precision, confidence_level)[0]
        for label, mask in groups.items()
    }
    best = _Choice(
        threshold, class_thresholds, _admitted(conf, predicted, threshold, class_thresholds), precision, lower
    )
    if groups:
        pooled = _pooled_thresholds(
            conf,
            ok,
            w,
            predicted,
            groups,
            rest if rest_is_own else None,
            threshold,
            target_precision,
            confidence_level,
        )
        if pooled is not None and w[pooled.admitted].sum() > w[best.admitted].sum():
            best = pooled
    return Calibration(
        threshold=best.threshold,
        class_thresholds=best.class_thresholds,
        expected_coverage=float(w[best.admitted].sum() / w.sum()),
        precision=best.precision,
        precision_lower_bound=best.lower,
        n=n,
    )


@dataclass(frozen=True)
class _Choice:
    """Thresholds for every group, the items they admit, and the precision that decided."""

    threshold: float
    class_thresholds: dict[str, float]
    admitted: NDArray[np.bool_]
    precision: float | None
    lower: float | None


def _admitted(
    conf: NDArray[np.float64],
    predicted: NDArray[np.object_],
    threshold: float,
    class_thresholds: dict[str, float],
) -> NDArray[np.bool_]:
    applied = np.asarray([class_thresholds.get(str(p), threshold) for p in predicted], dtype=np.float64)
    return conf >= applied


def _lowest_at_precision_level(curve: _Curve | None, level: float) -> float:
    """The lowest threshold of ``curve`` whose weighted point precision is at least ``level``."""
    if curve is None:
        return ADMIT_NOTHING
    good = np.flatnonzero(curve.precision >= level)
    return ADMIT_NOTHING if good.size == 0 else float(curve.thresholds[int(good[-1])])


#: The precision levels :func:`_pooled_thresholds` tries, from 1 down to the target, in this step.
POOLED_LEVEL_STEP = 0.0025


def _pooled_thresholds(
    conf: NDArray[np.float64],
    ok: NDArray[np.float64],
    w: NDArray[np.float64],
    predicted: NDArray[np.object_],
    groups: dict[str, NDArray[np.bool_]],
    rest: NDArray[np.bool_] | None,
    rest_threshold: float,
    target: float,
    confidence_level: float,
) -> _Choice | None:
    """One precision level ``q`` for every group (:func:`calibrate_threshold`): the lowest ``q``
    from 1 down to ``target`` whose union of admitted items has a weighted lower bound (Kish
    effective size, one-sided Clopper-Pearson at ``confidence_level``) at or above the target.
    ``rest`` (the items of the classes without their own threshold) is a group too; when it is
    ``None`` (too few such items) they keep ``rest_threshold``. None when no level qualifies."""
    # Each group's precision curve once; each level reads its lowest threshold off them.
    curves = {
        label: _precision_curve(conf[mask], ok[mask], w[mask]) if mask.any() else None
        for label, mask in groups.items()
    }
    rest_curve = _precision_curve(conf[rest], ok[rest], w[rest]) if rest is not None and rest.any() else None
    best: _Choice | None = None
    for level in np.arange(1.0, target - 1e-9, -POOLED_LEVEL_STEP):
        class_thresholds = {
            label: _lowest_at_precision_level(curve, float(level)) for label, curve in curves.items()
        }
        threshold = rest_threshold if rest is None else _lowest_at_precision_level(rest_curve, float(level))
        admitted = _admitted(conf, predicted, threshold, class_thresholds)
        if not admitted.any():
            continue
        wa = w[admitted]
        precision = min(1.0, max(0.0, float((wa * ok[admitted]).sum() / wa.sum())))
        n_eff = float(wa.sum() ** 2 / (_spread_weights(wa, ok[admitted]) ** 2).sum())
        lower = float(precision_lower_bound(precision * n_eff, n_eff, confidence_level))
        if lower >= target and (best is None or wa.sum() > w[best.admitted].sum()):
            best = _Choice(threshold, class_thresholds, admitted, precision, lower)
    return best


@dataclass(frozen=True)
class ThresholdMove:
    """The outcome of :func:`move_threshold`: the global threshold from now on, the direction
    (+1 tightened, -1 loosened, 0 kept), why, and the ``step`` every class threshold takes.

    ``step`` is the shift the sample was judged on (the move is evaluated on each answer's margin
    over the threshold that applied to it, so class thresholds move by the same step as the global
    one); ``None`` when every threshold goes to :data:`ADMIT_NOTHING` (the answers say the model is
    not to be trusted at any threshold)."""

    threshold: float
    direction: int  # +1 tightened, -1 loosened, 0 kept
    precision: float | None  # weighted precision admitted by the current thresholds
    bound: float | None  # the bound that decided (upper when tightening, else lower)
    reason: str
    step: float | None = 0.0

    @property
    def moved(self) -> bool:
        return self.direction != 0

    def shift(self, other: float) -> float:
        """Apply this move to a per-class threshold: the same step as the global one, within
        [0, 1]. A class threshold that admits nothing stays so (its own items said so), and every
        one goes to admit-nothing with the global one when the model is not to be trusted."""
        if other > 1.0:
            return other
        if self.step is None:
            return ADMIT_NOTHING
        return float(min(1.0, max(0.0, other + self.step)))


def move_threshold(
    current_threshold: float,
    confidences: ArrayLike,
    correct: ArrayLike,
    target_precision: float,
    weights: ArrayLike | None = None,
    confidence_level: float = 0.9,
    min_effective: float = 20.0,
    shrink: float = 0.5,
    item_thresholds: ArrayLike | None = None,
) -> ThresholdMove:
    """Move the serving model's thresholds from people's answers, tighter or looser.

    ``confidences``/``correct``/``weights`` describe items the serving model routed and people
    answered (its top probability at routing time, whether it matched the people's label, and
    ``1 / pi``). ``item_thresholds[i]`` is the threshold that applies to item ``i`` now (its
    predicted class's own, else the global ``current_threshold``; the default for all). A move is
    one step ``d`` added to every threshold, so it is judged on each answer's margin over its own
    threshold: the items a step ``d`` admits are those with ``confidence - threshold >= d``. (Judged
    against the global threshold alone, an answer below its class threshold, routed to people as
    uncertain, would count as admitted: with class thresholds above the global one that reads as
    low precision and tightens for nothing.) Answers whose class admits nothing are left out.

    Rules, each needing an effective sample (Kish) of at least ``min_effective`` among the items
    concerned:

    * **Tighten** when the one-sided upper bound at ``confidence_level`` of the weighted precision
      of the items the current thresholds admit is below the target: the data say precision is
      too low, not just noise. The step is to the lowest safe margin in the sample when one lies
      above 0; else the global threshold moves ``shrink`` of the way to 1; when even a threshold of
      1 cannot be trusted (the admitted precision is below half the target), every threshold goes
      to :data:`ADMIT_NOTHING`.
    * **Loosen** when a step below 0 has a lower bound at ``confidence_level`` that meets the
      target: the largest such step.
    * Otherwise keep it.

    A global threshold that admits nothing may loosen (to the lowest safe confidence; class
    thresholds stay) but never tightens.
    """
    if not 0.0 < shrink <= 1.0:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    conf, ok, w = _as_arrays(confidences, correct, weights)
    if conf.size == 0:
        return ThresholdMove(current_threshold, 0, None, None, "no answers yet")
    nothing = current_threshold > 1.0
    if item_thresholds is not None:
        own = np.asarray(item_thresholds, dtype=np.float64).ravel()
        if own.shape != conf.shape:
            raise ValueError(f"item_thresholds has {own.size} items, confidences {conf.size}")
    if item_thresholds is not None and nothing:
        # Only the global threshold may loosen, and only for the items it governs: not the answers
        # of classes whose own threshold admits (their good answers say nothing of the others).
        conf, ok, w = conf[own > 1.0], ok[own > 1.0], w[own > 1.0]
        if conf.size == 0:
            return ThresholdMove(current_threshold, 0, None, None, "no answers of classes that admit nothing")
    elif item_thresholds is not None:
        admissible = own <= 1.0
        # Each answer on the global threshold's scale: admitted by a step d iff this >= current + d.
        conf, ok, w = conf[admissible] - own[admissible] + current_threshold, ok[admissible], w[admissible]
        if conf.size == 0:
            return ThresholdMove(
                current_threshold, 0, None, None, "no answers of classes that admit anything"
            )
    curve = _precision_curve(conf, ok, w)
    here = None if nothing else curve.at(current_threshold)
    precision = None if here is None else float(curve.precision[here])
    if here is not None and curve.n_eff[here] >= min_effective:
        upper = float(curve.upper(confidence_level)[here])
        if upper < target_precision:
            lower = curve.lower(confidence_level)
            safe = np.flatnonzero((lower >= target_precision) & (curve.thresholds > current_threshold))
            step: float | None
            if safe.size:
                step = float(curve.thresholds[int(safe[-1])]) - current_threshold
                new = min(1.0, current_threshold + step)
            elif (precision is not None and precision < target_precision / 2) or current_threshold >= 1.0:
                new, step = ADMIT_NOTHING, None
            else:
                new = min(1.0, current_threshold + shrink * (1.0 - current_threshold))
                step = new - current_threshold
            return ThresholdMove(
                new,
                1,
                precision,
                upper,
                f"precision {precision:.3f} at threshold {current_threshold:.4f} (upper bound {upper:.3f}, "
                f"{curve.n_eff[here]:.0f} effective answers) is below the target {target_precision}: "
                f"threshold -> {new:.4f}",
                step,
            )
    lower = curve.lower(confidence_level)
    looser = np.flatnonzero(
        (lower >= target_precision) & (curve.thresholds < current_threshold) & (curve.n_eff >= min_effective)
    )
    if looser.size:
        i = int(looser[-1])
        new = max(0.0, float(curve.thresholds[i]))
        loosen_step = 0.0 if nothing else float(curve.thresholds[i]) - current_threshold
        return ThresholdMove(
            new,
            -1,
            precision,
            float(lower[i]),
            f"precision {curve.precision[i]:.3f} at threshold {new:.4f} (lower bound {lower[i]:.3f}, "
            f"{curve.n_eff[i]:.0f} effective answers) meets the target {target_precision}: "
            f"threshold {current_threshold:.4f} -> {new:.4f}",
            loosen_step,
        )
    return ThresholdMove(
        current_threshold, 0, precision, None, f"consistent with the target {target_precision}"
    )


def exploration_rate(explored_labels: int, young_rate: float, floor_rate: float, wanted: int) -> float:
    """The share of confident items sent to people anyway (exploration), as a pure function of
    how many exploration labels the project already holds: ``young_rate`` until ``wanted`` exist,
    then falling as ``young_rate * wanted / explored_labels``, never below ``floor_rate``.

    Exploration labels are what calibration learns the confident region from (with audits); each
    costs a human label, so the rate falls as the sample grows (its value stays: any later model
    is scored on all of them, see the module doc).
    """
    if explored_labels <= wanted:
        return young_rate
    return max(floor_rate, young_rate * wanted / explored_labels)


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
    conf, ok, w = _as_arrays(confidences, correct)
    if conf.size == 0:
        return 0.0
    curve = _precision_curve(conf, ok, w)
    reach = np.flatnonzero(curve.precision >= target_precision - 1e-9)
    return 0.0 if reach.size == 0 else float(curve.count[reach[-1]] / conf.size)


@dataclass(frozen=True)
class LabelBounds:
    """The outcome of :func:`calibrate_label_bounds` for a multi-label project.

    ``upper[label]``: "on" is auto-accepted at or above it (:data:`ADMIT_NOTHING`: never);
    ``lower[label]``: "off" is auto-accepted at or below it (:data:`NEVER_OFF`: never);
    ``budget``: the per-decision error budget that shaped them (None when nothing is admitted);
    ``expected_coverage``: weighted share of the calibration items auto-labeled (every label
    confident); ``precision`` / ``precision_lower_bound``: weighted exact-match precision of those
    items and its one-sided lower bound; ``n``: calibration items.
    """

    upper: dict[str, float]
    lower: dict[str, float]
    budget: float | None = None
    expected_coverage: float = 0.0
    precision: float | None = None
    precision_lower_bound: float | None = None
    n: int = 0

    @property
    def admits_nothing(self) -> bool:
        return all(u > 1.0 for u in self.upper.values()) and all(x < 0.0 for x in self.lower.values())


def _lowest_at_precision(
    conf: NDArray[np.float64],
    ok: NDArray[np.float64] | NDArray[np.bool_],
    w: NDArray[np.float64],
    level: float,
) -> float:
    """The lowest threshold whose admitted items' weighted precision (point estimate) is at least
    ``level``; :data:`ADMIT_NOTHING` when none is."""
    if conf.size == 0:
        return ADMIT_NOTHING
    curve = _precision_curve(conf, ok, w)
    reach = np.flatnonzero(curve.precision >= level - 1e-12)
    return ADMIT_NOTHING if reach.size == 0 else float(curve.thresholds[int(reach[-1])])


def _bounds_at(
    probs: NDArray[np.float64], truth: NDArray[np.bool_], w: NDArray[np.float64], budget: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per label (columns), the upper and lower thresholds at per-decision error ``budget``."""
    k = probs.shape[1]
    upper = np.full(k, ADMIT_NOTHING)
    lower = np.full(k, NEVER_OFF)
    for j in range(k):
        upper[j] = _lowest_at_precision(probs[:, j], truth[:, j], w, 1.0 - budget)
        # "off" ranks items by -p (p <= lower  <=>  -p >= -lower), exact in floating point
        off = _lowest_at_precision(-probs[:, j], ~truth[:, j], w, 1.0 - budget)
        lower[j] = NEVER_OFF if off > 1.0 else -off
    return upper, lower


def calibrate_label_bounds(
    probs: ArrayLike,
    truth: ArrayLike,
    labels: Sequence[str],
    target_precision: float,
    confidence_level: float = 0.95,
    weights: ArrayLike | None = None,
    min_samples: int = 50,
) -> LabelBounds:
    """Per-label upper and lower thresholds for a multi-label project whose auto-labels' weighted
    exact-match precision meets ``target_precision`` with one-sided confidence ``confidence_level``
    (module doc, "Multi-label projects").

    ``probs`` is ``(n, K)``: each item's independent probability per label (held-out or
    out-of-fold); ``truth`` ``(n, K)`` booleans: the human labels; ``weights`` the inverse
    selection probabilities (1 when omitted). Fewer than ``min_samples`` items, or no budget whose
    region meets the target: every label admits nothing.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(truth, dtype=bool)
    names = [str(x) for x in labels]
    if p.ndim != 2 or p.shape != y.shape or p.shape[1] != len(names):
        raise ValueError(f"probs {p.shape} and truth {y.shape} must both be (n, {len(names)})")
    n = int(p.shape[0])
    nothing = LabelBounds({x: ADMIT_NOTHING for x in names}, {x: NEVER_OFF for x in names}, n=n)
    if n < max(1, min_samples):
        return nothing
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("probs must be probabilities in [0, 1]")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n,) or not np.all(np.isfinite(w)) or w.min() <= 0.0:
        raise ValueError("weights must be n positive, finite numbers (1 / selection probability)")
    error = 1.0 - target_precision
    k = len(names)
    budgets = sorted(
        {error * f for f in (2.0, 1.0, 0.5, 0.25)} | {error / k * f for f in (1.0, 0.5, 0.25)} | {0.0}
    )
    best: LabelBounds = nothing
    for budget in sorted(budgets, reverse=True):
        upper, lower = _bounds_at(p, y, w, budget)
        on = p >= upper
        off = p <= lower
        admitted = np.all(on | off, axis=1)
        if not admitted.any():
            continue
        right = np.all(on == y, axis=1)[admitted]
        wa = w[admitted]
        precision = float(np.sum(wa * right) / np.sum(wa))
        n_eff = float(np.sum(wa) ** 2 / np.sum(wa * wa))
        bound = float(precision_lower_bound(precision * n_eff, n_eff, confidence_level))
        coverage = float(np.sum(wa) / np.sum(w))
        if bound >= target_precision and coverage > best.expected_coverage:
            best = LabelBounds(
                {x: float(u) for x, u in zip(names, upper, strict=True)},
                {x: float(v) for x, v in zip(names, lower, strict=True)},
                budget,
                coverage,
                precision,
                bound,
                n,
            )
    return best


@dataclass(frozen=True)
class LabelBoundsMove:
    """The outcome of :func:`move_label_bounds`: every label's pair from now on, the direction
    (+1 tightened, -1 loosened, 0 kept), why, and the ``step`` added to each upper threshold and
    taken from each lower one (``None`` when every label goes to never-confident)."""

    upper: dict[str, float]
    lower: dict[str, float]
    direction: int
    precision: float | None  # weighted exact-match precision of what the current pairs admit
    bound: float | None  # the bound that decided (upper when tightening, else lower)
    reason: str
    step: float | None = 0.0

    @property
    def moved(self) -> bool:
        return self.direction != 0


def _shift_bounds(
    upper: NDArray[np.float64], lower: NDArray[np.float64], step: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each label's pair after a step: the upper threshold up by ``step`` and the lower one down by
    it; a side pushed past [0, 1] is never confident, a side that was never confident stays so."""
    new_upper = np.where(upper <= 1.0, upper + step, upper)
    new_lower = np.where(lower >= 0.0, lower - step, lower)
    new_upper = np.where((upper <= 1.0) & (new_upper > 1.0), ADMIT_NOTHING, np.maximum(new_upper, 0.0))
    new_lower = np.where((lower >= 0.0) & (new_lower < 0.0), NEVER_OFF, np.minimum(new_lower, 1.0))
    return new_upper, new_lower


def move_label_bounds(
    upper: Mapping[str, float],
    lower: Mapping[str, float],
    probs: ArrayLike,
    truth: ArrayLike,
    labels: Sequence[str],
    target_precision: float,
    weights: ArrayLike | None = None,
    confidence_level: float = 0.9,
    min_effective: float = 20.0,
    shrink: float = 0.5,
) -> LabelBoundsMove:
    """Move a multi-label model's per-label thresholds from people's answers, tighter or looser:
    the multi-label analogue of :func:`move_threshold`, judged on exact-match precision.

    ``probs`` ``(n, K)``: the serving model's probability per label at routing time of items
    people answered; ``truth`` ``(n, K)``: their labels; ``weights``: ``1 / pi``. ``upper`` /
    ``lower``: the pairs now serving (a label missing from either is never confident on that
    side). A move is one step ``d`` added to every upper threshold and taken from every lower one,
    so it is judged on each answer's **margin**: the least, over labels, of how far the label's
    probability lies inside its confident zone (``p - upper`` for "on", ``lower - p`` for "off");
    the items a step ``d`` admits are those with margin ``>= d``, and one counts as right when the
    labels routing then turns on (``p >= upper + d``) are exactly people's. Loosening stops where
    a label's two zones would overlap (half the gap between its pair), so a label is never both.

    Rules, each needing an effective sample (Kish) of at least ``min_effective`` among the items
    concerned, as for single-label thresholds:

    * **Tighten** when the one-sided upper bound at ``confidence_level`` of the weighted
      exact-match precision of what the current pairs admit is below the target: to the smallest
      step above 0 whose lower bound meets the target; else by ``shrink`` of the largest margin
      answered (halfway into the admitted region); when the admitted precision is below half the
      target, every label becomes never-confident.
    * **Loosen** when a step below 0 has a lower bound at ``confidence_level`` that meets the
      target: the largest such step (the lowest ``d``).
    * Otherwise keep them.

    Pairs that admit nothing at all (every label never confident) have no zone to move: they
    loosen to the pairs :func:`calibrate_label_bounds` sets on the answers themselves, when those
    meet the target at ``confidence_level`` (``step`` is then ``None``).
    """
    if not 0.0 < shrink <= 1.0:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    names = [str(x) for x in labels]
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(truth, dtype=bool)
    k = len(names)
    if p.ndim != 2 or p.shape != y.shape or p.shape[1] != k:
        raise ValueError(f"probs {p.shape} and truth {y.shape} must both be (n, {k})")
    n = int(p.shape[0])
    if n and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("probs must be probabilities in [0, 1]")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n,) or (n and (not np.all(np.isfinite(w)) or w.min() <= 0.0)):
        raise ValueError("weights must be n positive, finite numbers (1 / selection probability)")
    up = np.array([float(upper.get(x, ADMIT_NOTHING)) for x in names])
    lo = np.array([float(lower.get(x, NEVER_OFF)) for x in names])
    current = (
        {x: float(u) for x, u in zip(names, up, strict=True)},
        {x: float(v) for x, v in zip(names, lo, strict=True)},
    )
    if n == 0:
        return LabelBoundsMove(*current, 0, None, None, "no answers yet")
    on_side = up <= 1.0
    off_side = lo >= 0.0
    with np.errstate(invalid="ignore"):
        margin = np.min(
            np.maximum(np.where(on_side, p - up, -np.inf), np.where(off_side, lo - p, -np.inf)), axis=1
        )
    both = on_side & off_side
    # below this step some label's zones would overlap (its "on" reaching below its "off")
    floor = float(np.max((lo[both] - up[both]) / 2.0)) if both.any() else -np.inf

    def judged(step: float) -> tuple[NDArray[np.bool_], float, float, float]:
        admitted = margin >= step
        wa = w[admitted]
        if not wa.size:
            return admitted, 0.0, 0.0, 0.0
        right = np.all((on_side & (p[admitted] >= up + step)) == y[admitted], axis=1)
        precision = float(np.sum(wa * right) / np.sum(wa))
        n_eff = float(np.sum(wa) ** 2 / np.sum(wa * wa))
        return admitted, precision, n_eff, float(np.sum(wa))

    def outcome(
        step: float | None, direction: int, precision: float | None, bound: float, why: str
    ) -> LabelBoundsMove:
        if step is None:
            new_up, new_lo = np.full(k, ADMIT_NOTHING), np.full(k, NEVER_OFF)
        else:
            new_up, new_lo = _shift_bounds(up, lo, step)
        return LabelBoundsMove(
            {x: float(u) for x, u in zip(names, new_up, strict=True)},
            {x: float(v) for x, v in zip(names, new_lo, strict=True)},
            direction,
            precision,
            bound,
            why,
            step,
        )

    finite = np.isfinite(margin)
    if not finite.any():
        # Every pair admits nothing (no step can loosen what has no confident zone): the answers,
        # every one sent to people with the probability it carries, calibrate fresh pairs, as a
        # global threshold that admits nothing loosens to the lowest safe confidence.
        fresh = calibrate_label_bounds(
            p,
            y,
            names,
            target_precision,
            confidence_level,
            weights=w,
            min_samples=int(np.ceil(min_effective)),
        )
        if fresh.admits_nothing or fresh.precision_lower_bound is None:
            return LabelBoundsMove(*current, 0, None, None, "no label decided yet; the answers admit nothing")
        return LabelBoundsMove(
            fresh.upper,
            fresh.lower,
            -1,
            None,
            fresh.precision_lower_bound,
            f"exact-match precision {fresh.precision:.3f} on {fresh.expected_coverage:.0%} of the answers "
            f"(lower bound {fresh.precision_lower_bound:.3f}) meets the target {target_precision}: "
            f"pairs calibrated on the answers",
            None,
        )
    steps = np.unique(margin[finite])  # ascending: each admits the items with margin >= it
    admitted_now, precision_now, n_eff_now, _ = judged(0.0)
    here = precision_now if admitted_now.any() else None
    if admitted_now.any() and n_eff_now >= min_effective:
        upper_now = float(precision_upper_bound(precision_now * n_eff_now, n_eff_now, confidence_level))
        if upper_now < target_precision:
            for step in steps[steps > 0.0]:
                _, precision, n_eff, _ = judged(float(step))
                if (
                    n_eff
                    and precision_lower_bound(precision * n_eff, n_eff, confidence_level) >= target_precision
                ):
                    chosen: float | None = float(step)
                    break
            else:
                deepest = float(margin[admitted_now].max())
                chosen = None if precision_now < target_precision / 2 else max(shrink * deepest, 1e-6)
            what = "every label -> never confident" if chosen is None else f"pairs tightened by {chosen:.4f}"
            return outcome(
                chosen,
                1,
                here,
                upper_now,
                f"exact-match precision {precision_now:.3f} of the auto-labels (upper bound {upper_now:.3f}, "
                f"{n_eff_now:.0f} effective answers) is below the target {target_precision}: {what}",
            )
    for step in steps[(steps < 0.0) & (steps >= floor)]:
        _, precision, n_eff, _ = judged(float(step))
        if n_eff < min_effective:
            continue
        bound = float(precision_lower_bound(precision * n_eff, n_eff, confidence_level))
        if bound >= target_precision:
            return outcome(
                float(step),
                -1,
                here,
                bound,
                f"exact-match precision {precision:.3f} with the pairs loosened by {-step:.4f} (lower bound "
                f"{bound:.3f}, {n_eff:.0f} effective answers) meets the target {target_precision}",
            )
    return LabelBoundsMove(*current, 0, here, None, f"consistent with the target {target_precision}")
