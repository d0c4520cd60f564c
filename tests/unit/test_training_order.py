"""Which due training the retraining service starts, and when (service.py, triggers.urgency).

The trainer is a fake that records what it was asked to train and holds each training until the
test lets it finish: the order of trainings is the service's logic, not the trainer's."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from labelloop.core.settings import load
from labelloop.retraining.dataset import LabeledSet
from labelloop.retraining.service import ProjectState, RetrainingService
from labelloop.retraining.settings import RetrainingSettings
from labelloop.retraining.triggers import RetrainTrigger, TriggerPolicy, TriggerReason, urgency

WAIT_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HeldTrainer:
    """Records each training it is given; each one runs until `finish()` lets it end."""

    def __init__(self) -> None:
        self.started: list[tuple[str, TriggerReason, int]] = []
        self.changed = threading.Condition()
        self._release = threading.Semaphore(0)

    def train(self, pid: str, labeled: Any, ticket: Any, snapshot: Any, offsets: str) -> str:
        with self.changed:
            self.started.append((pid, ticket.reason, ticket.labels_seen))
            self.changed.notify_all()
        assert self._release.acquire(timeout=WAIT_S), "the test never let the training finish"
        return "tfidf-lr"

    def finish(self) -> None:
        self._release.release()

    def wait_for(self, count: int) -> list[tuple[str, TriggerReason, int]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.started) >= count, timeout=WAIT_S), self.started
            return list(self.started)


class Registry:
    def by_alias(self, pid: str, alias: str) -> None:
        return None


@pytest.fixture
def service() -> Any:
    trainer = HeldTrainer()
    svc = RetrainingService(
        load(RetrainingSettings, environ={}),
        projects=None,  # type: ignore[arg-type]  # only the zero-shot prior reads projects
        registry=Registry(),  # type: ignore[arg-type]
        lifecycle=None,  # type: ignore[arg-type]
        trainer=trainer,  # type: ignore[arg-type]
        answers=None,  # type: ignore[arg-type]
    )
    yield svc, trainer
    for _ in range(10):  # let anything still held end, then stop the worker
        trainer.finish()
    svc.close()


def add_project(
    svc: RetrainingService, pid: str, clock: Clock, labels_in_model: int | None
) -> RetrainTrigger:
    trigger = RetrainTrigger(TriggerPolicy(), clock=clock, labels_in_model=labels_in_model)
    svc.states[pid] = ProjectState(pid, LabeledSet(0.2), trigger)
    return trigger


def test_a_project_due_by_its_labels_trains_before_idle_projects_due_by_the_timer(service: Any) -> None:
    svc, trainer = service
    clock = Clock()
    # Two idle projects: a model on 400 labels, 3 labels since, and the timer's 10 minutes passed
    # (after a restart every timer runs out at once); one project whose people label right now.
    for pid in ("idle-a", "idle-b"):
        add_project(svc, pid, clock, labels_in_model=400).record_labels(["x", "y", "x"] + ["x"] * 400)
    active = add_project(svc, "busy", clock, labels_in_model=50)
    active.record_labels(["x", "y"] * 25 + ["x"] * 30)  # 30 new labels: due (25)
    clock.now += 601
    for pid in ("idle-a", "idle-b"):
        assert svc.states[pid].trigger.due() is TriggerReason.TIMER

    svc.schedule()
    assert trainer.wait_for(1) == [("busy", TriggerReason.NEW_LABELS, 80)]
    svc.schedule()  # the worker is busy: nothing else starts, nothing is queued behind it
    assert svc.states["idle-a"].trigger.running is None and svc.states["idle-b"].trigger.running is None

    # While it trains, people give 30 more labels: due again, still ahead of the timer's.
    active.record_labels(["x"] * 30)
    trainer.finish()
    assert trainer.wait_for(2)[1] == ("busy", TriggerReason.NEW_LABELS, 110)
    trainer.finish()
    started = trainer.wait_for(3)  # the worker starts the next by itself, no batch needed
    assert started[2][:2] == ("idle-a", TriggerReason.TIMER)
    active.record_labels(["y"] * 25)  # due again while an idle project trains: it goes next
    trainer.finish()
    assert trainer.wait_for(4)[3] == ("busy", TriggerReason.NEW_LABELS, 135)
    trainer.finish()
    assert trainer.wait_for(5)[4][:2] == ("idle-b", TriggerReason.TIMER)
    trainer.finish()
    svc.close()
    assert [x[0] for x in trainer.started] == ["busy", "busy", "idle-a", "busy", "idle-b"]


def test_urgency_puts_a_request_then_a_first_model_then_labels_then_the_timer() -> None:
    keys = {
        "timer": urgency(TriggerReason.TIMER, 1, 25),
        "labels, just due": urgency(TriggerReason.NEW_LABELS, 25, 25),
        "labels, twice past due": urgency(TriggerReason.NEW_LABELS, 100, 50),
        "first model": urgency(TriggerReason.COLD_START, 50, 25),
        "asked by a person": urgency(TriggerReason.ON_DEMAND, 0, 25),
    }
    assert sorted(keys, key=keys.__getitem__) == [
        "asked by a person",
        "first model",
        "labels, twice past due",
        "labels, just due",
        "timer",
    ]
