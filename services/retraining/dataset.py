"""The human-labeled set of each project: what retraining trains and evaluates on.

Built from the `labels` topic (replayed from its start when the service starts, then consumed):
the latest label per item wins, and only labels whose source is people count (auto-labels are
never trained on). Audits add people's labels too: an audited auto-label (`audited`, from
`labels`, with the item's text) joined with the audit's consensus (from `annotations`), in either
order. Each label carries the weight 1 / the probability routing sent the item to people, so the
set stands for the stream in calibration (retraining/calibration.py). A review's verdict (an
`annotations` event of reason REVIEW with its consensus, see retraining/label_checks.py) replaces
the item's label here, in the training data only; the final label on `labels` stays. Each item is assigned for good to the training or the held-out split by a
hash of its id (`is_holdout`), so a champion trained earlier never saw any item of today's
held-out split: champion and candidate are compared on the same, unseen labels.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from labelloop.core.consensus_noise import VoteTally, consensus_probability, one_coin_accuracy
from labelloop.core.media import model_input
from labelloop.v1 import common_pb2, events_pb2

__all__ = ["HumanLabel", "LabeledSet", "Snapshot", "is_holdout"]


def is_holdout(item_id: str, fraction: float) -> bool:
    """True when `item_id` belongs to the held-out split (stable across runs and processes)."""
    digest = hashlib.blake2b(item_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


@dataclass(frozen=True)
class HumanLabel:
    """One item's human label."""

    item_id: str
    text: str
    label: str  # the label; for multi-label projects the label list joined by "|" ("" for none)
    weight: float = 1.0  # 1 / the probability routing sent this item to people
    annotators: tuple[str, ...] = ()  # who gave the label (a review excludes them)
    ingested: events_pb2.ItemIngested | None = field(default=None, compare=False, repr=False)
    # The answers behind the label: its count first, then each other label's (core/consensus_noise.py);
    # () when unknown. Set by LabeledSet.snapshot.
    votes: tuple[int, ...] = field(default=(), compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        """The label list (multi-label projects; one label for single-label ones)."""
        return tuple(self.label.split(LABELS_SEPARATOR)) if self.label else ()


LABELS_SEPARATOR = "|"  # never in a label name (core/identifiers.py)


def joined(labels: Sequence[str]) -> str:
    """A label list as `HumanLabel.label` holds it: one label as itself, several joined by "|"."""
    return LABELS_SEPARATOR.join(labels)


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of a project's human labels at one moment, split for training."""

    train: tuple[HumanLabel, ...]
    holdout: tuple[HumanLabel, ...]
    agreeing_pairs: int = 0  # pairs of answers to the project's completed tasks that agree
    pairs: int = 0  # and all such pairs (consensus_noise.one_coin_accuracy)

    def label_probabilities(self, entries: Sequence[HumanLabel], n_classes: int) -> list[float] | None:
        """Each entry's probability that its label is right, from its answers and the project's
        annotator accuracy (core/consensus_noise.py); None when the accuracy is unknown (fewer than
        `consensus_noise.MIN_PAIRS` pairs of answers, as with one annotator per task): no correction."""
        accuracy = one_coin_accuracy(self.agreeing_pairs, self.pairs, n_classes)
        if accuracy is None:
            return None
        return [consensus_probability(x.votes, accuracy, n_classes) for x in entries]

    @property
    def size(self) -> int:
        return len(self.train) + len(self.holdout)

    @property
    def explored(self) -> int:
        """Human labels of items routing could have auto-labeled (exploration, audits: weight > 1)."""
        return sum(1 for x in (*self.train, *self.holdout) if x.weight > 1.0)

    def class_counts(self) -> dict[str, int]:
        """Labels per class over both splits."""
        return dict(Counter(x.label for x in (*self.train, *self.holdout)))

    def fingerprint(self) -> str:
        """A short hash of the item ids and labels: the dataset snapshot reference."""
        h = hashlib.sha256()
        for x in sorted((*self.train, *self.holdout), key=lambda x: x.item_id):
            h.update(f"{x.item_id}\t{x.label}\n".encode())
        return h.hexdigest()[:16]


@dataclass
class LabeledSet:
    """A project's human labels; thread-safe (the consume loop writes, trainers snapshot)."""

    holdout_fraction: float
    max_pending_audits: int = 100_000  # audited items waiting for their other half
    _labels: dict[str, HumanLabel] = field(default_factory=dict)
    _audit_items: dict[str, events_pb2.ItemIngested] = field(default_factory=dict)
    _audit_answers: dict[str, tuple[str, float, tuple[str, ...]]] = field(default_factory=dict)
    _verdicts: dict[str, str] = field(default_factory=dict)  # item -> a review's verdict
    _reviews: set[str] = field(default_factory=set)  # items sent for review or reviewed
    _tally: VoteTally = field(default_factory=VoteTally)  # every task's answers (core/consensus_noise.py)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, label: events_pb2.LabelFinalized) -> str | None:
        """Record a label event. Returns the label when it adds a human label for an item not
        labeled by people before (what the trigger counts), else None. A model label never
        replaces a human one; a later human label for the same item replaces the earlier one (a redelivered event changes nothing)."""
        item = label.ingested.item
        if label.source == common_pb2.LABEL_SOURCE_MODEL and label.audited:
            with self._lock:
                answer = self._audit_answers.pop(item.item_id, None)
                if answer is None:
                    _bounded_put(self._audit_items, item.item_id, label.ingested, self.max_pending_audits)
                    return None
            return self._add(
                HumanLabel(item.item_id, model_input(item), answer[0], answer[1], answer[2], label.ingested)
            )
        # A human label lists one label (single-label projects) or any number, none included
        # (multi-label projects: "no label applies" is an answer).
        if label.source != common_pb2.LABEL_SOURCE_HUMAN:
            return None
        return self._add(
            HumanLabel(
                item.item_id,
                model_input(item),
                joined(label.labels),
                _weight(label.answer_probability),
                tuple(label.annotators),
                label.ingested,
            )
        )

    def apply_audit(self, annotation: events_pb2.AnnotationSubmitted) -> str | None:
        """Record an audit's consensus (the annotation that completed an audit task). Returns the
        label when it adds a human label (its audited auto-label was seen), else None."""
        if annotation.reason != events_pb2.TASK_REASON_AUDIT or not _has_consensus(annotation):
            return None
        label, weight = joined(annotation.consensus_labels), _weight(annotation.answer_probability)
        annotators = (annotation.annotator_id,)
        with self._lock:
            ingested = self._audit_items.pop(annotation.item_id, None)
            if ingested is None:
                _bounded_put(
                    self._audit_answers,
                    annotation.item_id,
                    (label, weight, annotators),
                    self.max_pending_audits,
                )
                return None
        return self._add(
            HumanLabel(annotation.item_id, model_input(ingested.item), label, weight, annotators, ingested)
        )

    def apply_answer(self, annotation: events_pb2.AnnotationSubmitted) -> None:
        """Count one person's answer to a task that is not a review (labeling, exploration,
        audit): the votes behind each label and the project's agreeing pairs of answers, from
        which calibration learns how often a consensus is wrong (core/consensus_noise.py)."""
        if annotation.reason == events_pb2.TASK_REASON_REVIEW:
            return
        consensus = joined(annotation.consensus_labels) if _has_consensus(annotation) else None
        with self._lock:
            self._tally.add(
                annotation.task_id or annotation.item_id,
                annotation.lease_id,
                joined(annotation.labels),
                annotation.item_id,
                consensus,
            )

    def pairs_of_answers(self) -> int:
        """Pairs of answers to the same task seen so far (0 with one annotator per task)."""
        with self._lock:
            return self._tally.pairs

    def label_probability(self, item_id: str, label: str, n_classes: int) -> float:
        """The probability that people's label `label` of the item is right (1 when unknown)."""
        with self._lock:
            votes = self._tally.votes(item_id, label)
            accuracy = one_coin_accuracy(self._tally.agreeing_pairs, self._tally.pairs, n_classes)
        return consensus_probability(votes, accuracy, n_classes)

    def apply_review(self, annotation: events_pb2.AnnotationSubmitted) -> bool:
        """Record an answer to a review task (reason REVIEW). Its consensus, once there, replaces
        the item's label for training, now and for any later delivery of the item's label.
        Returns True when a label changed. Every review answer marks the item as reviewed."""
        if annotation.reason != events_pb2.TASK_REASON_REVIEW:
            return False
        with self._lock:
            self._reviews.add(annotation.item_id)
            if not _has_consensus(annotation):
                return False
            verdict = joined(annotation.consensus_labels)
            self._verdicts[annotation.item_id] = verdict
            entry = self._labels.get(annotation.item_id)
            if entry is None or entry.label == verdict:
                return False
            self._labels[annotation.item_id] = replace(entry, label=verdict)
            return True

    def reviewed(self) -> set[str]:
        """Items sent for review or reviewed before (each item is reviewed at most once)."""
        with self._lock:
            return set(self._reviews)

    def mark_sent_for_review(self, item_ids: Sequence[str]) -> None:
        """Record that review tasks were sent for `item_ids`."""
        with self._lock:
            self._reviews.update(item_ids)

    def _add(self, entry: HumanLabel) -> str | None:
        with self._lock:
            verdict = self._verdicts.get(entry.item_id)
            if verdict is not None:
                entry = replace(entry, label=verdict)
            previous = self._labels.get(entry.item_id)
            self._labels[entry.item_id] = entry
        return entry.label if previous is None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._labels)

    def labels(self) -> Sequence[str]:
        """Every human label (one per item)."""
        with self._lock:
            return [x.label for x in self._labels.values()]

    def snapshot(self) -> Snapshot:
        """A copy split into training and held-out labels."""
        with self._lock:
            values = [replace(x, votes=self._tally.votes(x.item_id, x.label)) for x in self._labels.values()]
            agreeing_pairs, pairs = self._tally.agreeing_pairs, self._tally.pairs
        train = tuple(x for x in values if not is_holdout(x.item_id, self.holdout_fraction))
        holdout = tuple(x for x in values if is_holdout(x.item_id, self.holdout_fraction))
        return Snapshot(train, holdout, agreeing_pairs, pairs)


def _has_consensus(annotation: events_pb2.AnnotationSubmitted) -> bool:
    """True on the answer that completes a task (its consensus is set, possibly to no label)."""
    return bool(annotation.consensus_labels) or annotation.consensus_no_label


def _weight(answer_probability: float) -> float:
    """1 / the probability that routing sent the item to people (0, unknown, reads as 1)."""
    return 1.0 / answer_probability if 0.0 < answer_probability < 1.0 else 1.0


def _bounded_put(pending: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Insert, dropping the oldest entries beyond `limit` (an audit never answered)."""
    pending[key] = value
    while len(pending) > limit:
        pending.pop(next(iter(pending)))
