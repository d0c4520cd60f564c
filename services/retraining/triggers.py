"""When to train a project's next model: a pure, clock-injected trigger policy.

The retraining service keeps one :class:`RetrainTrigger` per project, feeds it every new human
label (:meth:`RetrainTrigger.record_labels`) and on-demand requests
(:meth:`RetrainTrigger.request`), asks :meth:`RetrainTrigger.due`, and brackets each training with
:meth:`RetrainTrigger.start` / :meth:`RetrainTrigger.finish`. Nothing here sleeps, reads a clock
other than the injected one, or does I/O.

Policy (defaults in :class:`TriggerPolicy`):

- **cold start**: the first model once ``first_model_labels`` (50) human labels exist covering at
  least ``min_classes`` (2) classes;
- then a retraining once ``max(retrain_every_labels, retrain_growth * L)`` human labels arrived
  since the last training started, where ``L`` is the number that training was started on
  (defaults: 25 labels, or 20% more labels than the last model saw), or once
  ``retrain_every_seconds`` (600 s = 10 minutes) passed since it started and at least one new
  human label arrived, whichever comes first. A model's quality grows with the logarithm of its
  labels, so the schedule is geometric: early models (tens of labels, the ones that decide how
  much of the stream goes to people) are replaced every 25 labels, later ones every 20% (at 2,000
  labels: every 400), which bounds the trainings of a stream of N human labels to about
  ``log(N / 125) / log(1.2) + 4``;
- **on demand**: :meth:`RetrainTrigger.request` makes a training due at once (as soon as the labels
  cover ``min_classes`` classes, since a classifier needs two), even without new labels;
- **one at a time**: while a training runs nothing is due and :meth:`RetrainTrigger.start` raises;
- **after a failure**: the labels are not consumed, but the next attempt waits
  ``failure_backoff_seconds`` (60 s), doubled after each failure in a row up to
  ``failure_backoff_max_seconds`` (1 hour), so a broken training does not loop hot (a project
  whose champion left Triton failed every 30 s, each attempt a whole training, and held the one
  training worker from the projects that could train).

"Since the last training started" counts labels and time from the snapshot the last successful
training was started on: labels that arrived while it ran count toward the next one.

**Which project trains next** (:func:`urgency`): the service has one training worker, and when
it is free it starts the due training that sorts first: a person's request, then a project's
first model, then projects whose new labels made them due (the furthest past their due count
first), then the timer's. A project whose people wait for a model is thus never queued behind
the timer trainings of idle projects, which come all at once 10 minutes after a restart (every
trigger's timer starts at its construction): in a `make bench` run, the first models of BBC
News with noisy people waited 53-58 s behind 23 such trainings while people labeled every
item, and the run sent 2.2x the reference's share of the stream to people.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "NotDueError",
    "RetrainTrigger",
    "TrainingInProgressError",
    "TrainingTicket",
    "TriggerPolicy",
    "TriggerReason",
    "urgency",
]


class TriggerReason(enum.StrEnum):
    """Why a training is due (recorded as an MLflow param / in the `models` event)."""

    COLD_START = "cold_start"
    NEW_LABELS = "new_labels"
    TIMER = "timer"
    ON_DEMAND = "on_demand"


#: Rank of each reason when due trainings of different projects wait for the one worker (lower first).
_URGENCY = {
    TriggerReason.ON_DEMAND: 0,
    TriggerReason.COLD_START: 1,
    TriggerReason.NEW_LABELS: 2,
    TriggerReason.TIMER: 3,
}


def urgency(reason: TriggerReason, new_labels: int, labels_due: int) -> tuple[int, float]:
    """The sort key of a due training among other projects' (lower starts first; module doc):
    its reason's rank, then how far its new labels are past the count that made it due. A
    timer's training waits as long as another project is due by its labels: it only refreshes
    a model with a few new labels, where the others' people are waiting."""
    return _URGENCY[reason], -new_labels / max(1, labels_due)


class TrainingInProgressError(RuntimeError):
    """A training of this project is already running (never two at once)."""


class NotDueError(RuntimeError):
    """:meth:`RetrainTrigger.start` was called when no training is due."""


@dataclass(frozen=True)
class TriggerPolicy:
    """The configurable thresholds of the trigger policy (see the module docstring)."""

    first_model_labels: int = 50
    min_classes: int = 2
    retrain_every_labels: int = 25
    retrain_growth: float = 0.2
    retrain_every_seconds: float = 600.0
    failure_backoff_seconds: float = 60.0
    failure_backoff_max_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.first_model_labels < 1 or self.retrain_every_labels < 1:
            raise ValueError("first_model_labels and retrain_every_labels must be at least 1")
        if self.min_classes < 2:
            raise ValueError("min_classes must be at least 2: a classifier needs two classes")
        if self.retrain_growth < 0:
            raise ValueError("retrain_growth must be >= 0")
        if self.retrain_every_seconds <= 0 or self.failure_backoff_seconds < 0:
            raise ValueError("retrain_every_seconds must be > 0 and failure_backoff_seconds >= 0")


@dataclass(frozen=True)
class TrainingTicket:
    """A started training: why, on how many human labels (the snapshot), and when it started."""

    reason: TriggerReason
    labels_seen: int
    started_at: float
    sequence: int


class RetrainTrigger:
    """The trigger state of one project. Not thread-safe: one owner per project.

    ``clock`` returns seconds (monotonic; default :func:`time.monotonic`). To resume after a
    restart, replay the human labels through :meth:`record_labels` and pass ``labels_in_model``,
    the number of human labels the serving model was trained on (``None``: no model yet).
    """

    def __init__(
        self,
        policy: TriggerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        labels_in_model: int | None = None,
    ) -> None:
        self.policy = policy or TriggerPolicy()
        self._clock = clock
        self._labels = 0
        self._classes: set[str] = set()
        self._has_model = labels_in_model is not None
        self._labels_at_last_start = labels_in_model or 0
        self._last_start = clock()
        self._retry_after: float | None = None
        self._failures = 0  # in a row
        self._requested = False
        self._running: TrainingTicket | None = None
        self._sequence = 0

    # -- inputs ------------------------------------------------------------------------------
    def record_labels(self, labels: Iterable[str]) -> None:
        """Count new final human labels (one entry per labeled item, its label)."""
        for label in labels:
            self._labels += 1
            self._classes.add(label)

    def model_served(self, labels_in_model: int) -> None:
        """A model this trigger did not train serves now, trained on `labels_in_model` human
        labels (the zero-shot prior: 0). Without a model yet, the trigger then counts as a
        restart with that model would (``labels_in_model`` at construction): the next training is
        due after the regular number of new labels, counted from `labels_in_model`. Ignored once
        the trigger has a model."""
        if self._has_model:
            return
        self._has_model = True
        self._labels_at_last_start = labels_in_model
        self._last_start = self._clock()

    def request(self) -> None:
        """An on-demand training (`labelloop model retrain`): due as soon as it can train."""
        self._requested = True

    # -- state -------------------------------------------------------------------------------
    @property
    def human_labels(self) -> int:
        """Human labels counted so far."""
        return self._labels

    @property
    def has_model(self) -> bool:
        """Whether a training ever succeeded (or a model existed at construction)."""
        return self._has_model

    @property
    def running(self) -> TrainingTicket | None:
        """The training in progress, if any."""
        return self._running

    @property
    def new_labels(self) -> int:
        """Human labels that arrived since the last successful training started."""
        return self._labels - self._labels_at_last_start

    @property
    def labels_due(self) -> int:
        """New human labels that make a retraining due: ``max(retrain_every_labels,
        ceil(retrain_growth * labels the last training started on))``."""
        grown = math.ceil(self.policy.retrain_growth * self._labels_at_last_start - 1e-9)
        return max(self.policy.retrain_every_labels, grown)

    def due(self) -> TriggerReason | None:
        """Why a training should start now, or None (also None while one is running)."""
        if self._running is not None or len(self._classes) < self.policy.min_classes:
            return None
        now = self._clock()
        if self._retry_after is not None and now < self._retry_after:
            return None
        if self._requested:
            return TriggerReason.ON_DEMAND
        if not self._has_model:
            return TriggerReason.COLD_START if self._labels >= self.policy.first_model_labels else None
        if self.new_labels >= self.labels_due:
            return TriggerReason.NEW_LABELS
        if self.new_labels > 0 and now - self._last_start >= self.policy.retrain_every_seconds:
            return TriggerReason.TIMER
        return None

    # -- protocol ----------------------------------------------------------------------------
    def start(self) -> TrainingTicket:
        """Mark a training as started on the labels counted so far and return its ticket.

        Raises :class:`TrainingInProgressError` if one is running, :class:`NotDueError` if none is due.
        """
        if self._running is not None:
            raise TrainingInProgressError(f"training {self._running.sequence} is still running")
        reason = self.due()
        if reason is None:
            raise NotDueError("no training is due")
        self._sequence += 1
        self._running = TrainingTicket(reason, self._labels, self._clock(), self._sequence)
        self._requested = False
        return self._running

    def finish(self, ticket: TrainingTicket, succeeded: bool) -> None:
        """Mark the training of ``ticket`` as over (a model rejected by the gate still succeeded).

        On success the ticket's labels are consumed and the timer restarts from its start. On
        failure nothing is consumed (an on-demand request is re-armed) and the next attempt waits
        ``failure_backoff_seconds``. Raises ValueError for a ticket that is not the running one.
        """
        if self._running is None or ticket.sequence != self._running.sequence:
            raise ValueError(f"training {ticket.sequence} is not the one running")
        self._running = None
        if succeeded:
            self._has_model = True
            self._labels_at_last_start = ticket.labels_seen
            self._last_start = ticket.started_at
            self._retry_after = None
            self._failures = 0
        else:
            if ticket.reason is TriggerReason.ON_DEMAND:
                self._requested = True
            self._failures += 1
            self._retry_after = self._clock() + self.retry_delay

    @property
    def retry_delay(self) -> float:
        """How long the next attempt waits after the failures in a row so far (0 after none):
        ``failure_backoff_seconds`` doubled per failure beyond the first, at most
        ``failure_backoff_max_seconds``."""
        if self._failures == 0:
            return 0.0
        base = self.policy.failure_backoff_seconds
        return float(
            min(max(base, self.policy.failure_backoff_max_seconds), base * 2.0 ** min(self._failures - 1, 60))
        )
