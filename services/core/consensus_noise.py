"""How far people's consensus can be trusted as the truth calibration scores a model against.

A project with ``annotators_per_task`` k >= 2 has noisy people: its human label is the majority of
k answers, and that majority is sometimes wrong. Calibration (calibration.py) counts a model's
prediction as right when it equals the label, so a wrong label turns a right prediction into a
counted error (and, rarely, a wrong prediction into a counted success). On two classes with
people 10% wrong, three per task, about 2.8% of labels are wrong, and a model that is 95% precise
measures about 92.5%: its thresholds are set too high, and people label what the model could have.
This module turns each label's agreement into the probability that the label is right, and each
prediction's right/wrong into a score whose expectation is the prediction's true correctness.

Statistics (README, "How thresholds are set", "Noisy people"):

* **Annotator accuracy.** The one-coin model (Dawid & Skene 1979 with one parameter): each answer is
  right with probability ``a``; a wrong one is any of the other ``K - 1`` labels alike. Two answers
  to the same task then agree with probability ``s = a^2 + (1 - a)^2 / (K - 1)``; ``s`` is measured
  over every pair of answers to the project's completed tasks (:class:`VoteTally`) and solved for
  ``a`` (:func:`one_coin_accuracy`). Pairs, not agreement with the consensus: an answer is part of
  the consensus it is compared with.
* **A label's probability of being right.** Under that model, with ``n_j`` answers for label ``j``,
  the posterior of the true label (uniform prior) is proportional to ``exp(n_j * L)`` with
  ``L = log(a (K - 1) / (1 - a))``; labels nobody chose count ``n_j = 0``.
  :func:`consensus_probability` is that posterior at the consensus label: ``pi``.
* **The score.** With ``ok`` the prediction's agreement with the label, and the model's and
  people's errors independent, ``E[ok] = p pi + (1 - p)(1 - pi) r``, where ``p`` is the
  probability the prediction is right and ``r`` the probability a wrong label equals a wrong
  prediction. ``r`` is taken as 1 (exact on two classes; on more it overstates the chance that
  both err alike, so the correction is smaller than the truth: the safe side). Solving for ``p``
  gives the score ``(ok - (1 - pi)) / (2 pi - 1)`` (:func:`corrected_scores`), an unbiased
  estimate of the prediction's correctness: ``pi / (2 pi - 1)`` for an agreeing prediction,
  ``-(1 - pi) / (2 pi - 1)`` for a disagreeing one, exactly ``ok`` when ``pi = 1``. Weighted means
  of scores estimate precision as weighted means of ``ok`` did; the score's spread is
  ``|2 s - 1| = 1 / (2 pi - 1)``, and calibration's Kish effective size divides by it squared
  (retraining/calibration.py, ``_spread_weights``), so the bound widens with the noise it corrects.
  The audited precision that ProjectStatus and the ``labelloop_audited_precision`` gauge report
  is the mean score of the audits, so a healthy noisy project does not read as below its target.

Known limits: people's errors that follow the model's (both fooled by the same hard items) make
the correction optimistic; a label's own agreement carries that where it shows (a hard item gets a
split vote and a lower ``pi``), but errors on which all k people agree do not show. Without at
least :data:`MIN_PAIRS` pairs of answers (every project with one annotator per task) nothing is
corrected (``pi = 1``), as before. Multi-label projects are not corrected (their exact-match
precision would need the per-label model). Each ``pi`` is floored at :data:`MIN_PROBABILITY`, where
the score's spread is 2.5.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MIN_PAIRS",
    "MIN_PROBABILITY",
    "VoteTally",
    "consensus_probability",
    "corrected_scores",
    "one_coin_accuracy",
]

#: Pairs of answers needed before the annotators' accuracy is estimated (fewer: no correction).
MIN_PAIRS = 30
#: The lowest probability a consensus label is given (its score's spread is then 1 / 0.2).
MIN_PROBABILITY = 0.7


def one_coin_accuracy(agreeing_pairs: int, pairs: int, n_classes: int) -> float | None:
    """The accuracy ``a`` of the one-coin model whose pairs of answers agree as often as measured:
    the root above chance of ``a^2 + (1 - a)^2 / (K - 1) = agreeing_pairs / pairs``. None with fewer
    than :data:`MIN_PAIRS` pairs or fewer than two classes; ``1 / K`` when people agree no more than
    chance would."""
    if pairs < MIN_PAIRS or n_classes < 2:
        return None
    if not 0 <= agreeing_pairs <= pairs:
        raise ValueError(f"agreeing_pairs must be in [0, {pairs}], got {agreeing_pairs}")
    k = float(n_classes)
    s = agreeing_pairs / pairs
    # K a^2 - 2 a + 1 - s (K - 1) = 0, multiplied out from the agreement above.
    disc = 1.0 - k + s * k * (k - 1.0)
    return 1.0 / k if disc <= 0.0 else min(1.0, (1.0 + math.sqrt(disc)) / k)


def consensus_probability(counts: Sequence[int], accuracy: float | None, n_classes: int) -> float:
    """The probability that the consensus is the true label, given its answers: ``counts[0]`` for
    the consensus label, then one count per other label chosen; one-coin model of accuracy
    ``accuracy`` over ``n_classes`` labels, uniform prior; floored at :data:`MIN_PROBABILITY` (one
    answer alone gives ``accuracy``). 1 when the accuracy is unknown (None) or perfect, or the
    counts are (no votes known)."""
    if accuracy is None or accuracy >= 1.0 or not counts or n_classes < 2:
        return 1.0
    if any(c < 0 for c in counts) or (len(counts) > 1 and counts[0] < max(counts[1:])):
        raise ValueError(f"the consensus count must come first and be the largest: {list(counts)}")
    a = max(accuracy, 1.0 / n_classes + 1e-9)
    logit = math.log(a * (n_classes - 1) / (1.0 - a))
    top = counts[0] * logit
    unchosen = max(0, n_classes - len(counts))
    total = sum(math.exp(c * logit - top) for c in counts) + unchosen * math.exp(-top)
    return max(MIN_PROBABILITY, 1.0 / total)


def corrected_scores(correct: ArrayLike, probability: ArrayLike) -> NDArray[np.float64]:
    """Each prediction's score: ``(ok - (1 - pi)) / (2 pi - 1)`` (module doc), ``ok`` where
    ``pi`` is 1."""
    ok = np.asarray(correct, dtype=np.float64)
    pi = np.clip(np.asarray(probability, dtype=np.float64), MIN_PROBABILITY, 1.0)
    if ok.shape != pi.shape:
        raise ValueError(f"correct and probability differ in shape: {ok.shape} vs {pi.shape}")
    return (ok - (1.0 - pi)) / (2.0 * pi - 1.0)


@dataclass
class VoteTally:
    """A project's answers per task until its consensus, then per item the consensus label with
    its vote counts, and the project's pairs of answers (agreeing, all). Not thread-safe: the
    labeled set's lock guards it (retraining/dataset.py). A re-sent answer (same lease) counts once, and so does a task
    whose answers are delivered again after it completed."""

    max_pending: int = 100_000
    agreeing_pairs: int = 0
    pairs: int = 0
    _pending: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> lease -> answer
    _items: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)  # completed tasks

    def add(self, task_id: str, lease_id: str, answer: str, item_id: str, consensus: str | None) -> None:
        """One answer; ``consensus`` is set on the answer that completes the task."""
        if task_id in self._done:
            return
        answers = self._pending.setdefault(task_id, {})
        answers[lease_id or str(len(answers))] = answer
        while len(self._pending) > self.max_pending:
            self._pending.pop(next(iter(self._pending)))
        if consensus is None:
            return
        self._done.add(task_id)
        votes = Counter(self._pending.pop(task_id, {}).values())
        n = sum(votes.values())
        self.pairs += n * (n - 1) // 2
        self.agreeing_pairs += sum(c * (c - 1) // 2 for c in votes.values())
        others = sorted((c for label, c in votes.items() if label != consensus), reverse=True)
        self._items[item_id] = (consensus, (votes.get(consensus, 0), *others))

    def votes(self, item_id: str, label: str) -> tuple[int, ...]:
        """The vote counts of the item's last completed task (consensus first) when its consensus
        was ``label``; () otherwise (never seen, or a review changed the label)."""
        seen = self._items.get(item_id)
        return seen[1] if seen is not None and seen[0] == label else ()
