"""The decision of a simulated annotator in `labelloop bench` (issue 5), without any I/O.

A simulated annotator knows the item's hidden label and answers it, except that with probability
``error_rate`` it answers a label drawn uniformly from the OTHER labels of the label set. The gRPC
client that leases tasks and submits these answers (and waits the configured latency) lives apart.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["SimulatedAnnotator", "simulated_answer"]


def simulated_answer(true_label: str, labels: Sequence[str], error_rate: float, rng: random.Random) -> str:
    """Return a simulated annotator's answer for an item whose hidden label is ``true_label``.

    With probability ``error_rate`` the answer is wrong: a label drawn uniformly from the distinct
    labels of ``labels`` other than ``true_label``; otherwise it is ``true_label``. Exactly one
    ``rng.random()`` draw decides right or wrong, and one ``rng.choice`` picks the wrong label, so a
    seeded ``rng`` gives a reproducible sequence of answers.

    Raises ValueError when ``error_rate`` is outside [0, 1], when ``true_label`` is not in
    ``labels``, or when an error is possible (``error_rate`` > 0) but there is no other label.
    """
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    if true_label not in labels:
        raise ValueError(f"the hidden label {true_label!r} is not in the label set {list(labels)}")
    others = sorted({label for label in labels if label != true_label})
    if error_rate > 0.0 and not others:
        raise ValueError("a wrong answer needs at least two distinct labels in the label set")
    if rng.random() < error_rate:
        return rng.choice(others)
    return true_label


@dataclass
class SimulatedAnnotator:
    """One simulated annotator: its id, label set, error rate and its own seeded random stream.

    Each annotator draws from its own ``random.Random(seed)``, so several annotators in one bench
    run make independent errors and a run is reproducible given the order of the tasks they get.
    """

    annotator_id: str
    labels: Sequence[str]
    error_rate: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")
        self._rng = random.Random(f"{self.seed}:{self.annotator_id}")

    def answer(self, true_label: str) -> str:
        """This annotator's answer for an item whose hidden label is ``true_label``."""
        return simulated_answer(true_label, self.labels, self.error_rate, self._rng)
