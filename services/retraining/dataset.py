"""The human-labeled set of each project: what retraining trains and evaluates on.

Built from the `labels` topic (replayed from its start when the service starts, then consumed):
the latest label per item wins, and only labels whose source is people count (auto-labels are
never trained on). Each item is assigned for good to the training or the held-out split by a
hash of its id (`is_holdout`), so a champion trained earlier never saw any item of today's
held-out split: champion and candidate are compared on the same, unseen labels.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    label: str


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of a project's human labels at one moment, split for training."""

    train: tuple[HumanLabel, ...]
    holdout: tuple[HumanLabel, ...]

    @property
    def size(self) -> int:
        return len(self.train) + len(self.holdout)

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
    _labels: dict[str, HumanLabel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, label: events_pb2.LabelFinalized) -> str | None:
        """Record a label event. Returns the label when it adds a human label for an item not
        labeled by people before (what the trigger counts), else None. A model label never
        replaces a human one; a later human label for the same item replaces the earlier one (a redelivered event changes nothing)."""
        if label.source != common_pb2.LABEL_SOURCE_HUMAN or not label.labels:
            return None
        item = label.ingested.item
        entry = HumanLabel(item.item_id, item.content.text, label.labels[0])
        with self._lock:
            previous = self._labels.get(item.item_id)
            self._labels[item.item_id] = entry
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
            values = list(self._labels.values())  # arrival order
        train = tuple(x for x in values if not is_holdout(x.item_id, self.holdout_fraction))
        holdout = tuple(x for x in values if is_holdout(x.item_id, self.holdout_fraction))
        return Snapshot(train, holdout)
