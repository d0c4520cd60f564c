"""Unit tests of the retraining trigger policy (labelloop.retraining.triggers)."""

from __future__ import annotations

import pytest

from labelloop.retraining.triggers import (
    NotDueError,
    RetrainTrigger,
    TrainingInProgressError,
    TriggerPolicy,
    TriggerReason,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    policy: TriggerPolicy | None = None, labels_in_model: int | None = None
) -> tuple[RetrainTrigger, FakeClock]:
    clock = FakeClock()
    return RetrainTrigger(policy or TriggerPolicy(), clock=clock, labels_in_model=labels_in_model), clock


def train(trigger: RetrainTrigger, expected: TriggerReason) -> None:
    ticket = trigger.start()
    assert ticket.reason is expected
    trigger.finish(ticket, succeeded=True)


def test_cold_start_after_n_labels_with_two_classes() -> None:
    trigger, _ = make()
    trigger.record_labels(["a"] * 49)
    assert trigger.due() is None
    trigger.record_labels(["a"])
    assert trigger.due() is None, "50 labels of one class cannot train a classifier"
    trigger.record_labels(["b"])
    assert trigger.due() is TriggerReason.COLD_START
    train(trigger, TriggerReason.COLD_START)
    assert trigger.has_model and trigger.new_labels == 0 and trigger.due() is None


def test_retrain_every_m_new_labels() -> None:
    trigger, _ = make(TriggerPolicy(first_model_labels=10, retrain_every_labels=100))
    trigger.record_labels(["a", "b"] * 5)
    train(trigger, TriggerReason.COLD_START)
    trigger.record_labels(["a"] * 99)
    assert trigger.due() is None
    trigger.record_labels(["b"])
    assert trigger.due() is TriggerReason.NEW_LABELS


def test_timer_only_with_new_labels() -> None:
    trigger, clock = make(TriggerPolicy(first_model_labels=2, retrain_every_seconds=600))
    trigger.record_labels(["a", "b"])
    train(trigger, TriggerReason.COLD_START)
    clock.now += 10_000
    assert trigger.due() is None, "the timer alone, without new labels, trains nothing"
    trigger.record_labels(["a"])
    assert trigger.due() is TriggerReason.TIMER
    train(trigger, TriggerReason.TIMER)
    trigger.record_labels(["a"])
    clock.now += 599
    assert trigger.due() is None
    clock.now += 1
    assert trigger.due() is TriggerReason.TIMER


def test_whichever_comes_first() -> None:
    trigger, clock = make(
        TriggerPolicy(first_model_labels=2, retrain_every_labels=5, retrain_every_seconds=60)
    )
    trigger.record_labels(["a", "b"])
    train(trigger, TriggerReason.COLD_START)
    trigger.record_labels(["a"] * 5)
    assert trigger.due() is TriggerReason.NEW_LABELS  # labels first, long before the timer
    train(trigger, TriggerReason.NEW_LABELS)
    trigger.record_labels(["a"])
    clock.now += 60
    assert trigger.due() is TriggerReason.TIMER  # timer first, with one label


def test_on_demand_even_without_new_labels_but_not_with_one_class() -> None:
    trigger, _ = make()
    trigger.record_labels(["a"] * 3)
    trigger.request()
    assert trigger.due() is None
    trigger.record_labels(["b"])
    assert trigger.due() is TriggerReason.ON_DEMAND
    train(trigger, TriggerReason.ON_DEMAND)
    assert trigger.due() is None
    trigger.request()
    assert trigger.due() is TriggerReason.ON_DEMAND


def test_never_two_trainings_at_once() -> None:
    trigger, clock = make(TriggerPolicy(first_model_labels=2, retrain_every_labels=3))
    trigger.record_labels(["a", "b"])
    ticket = trigger.start()
    assert trigger.running == ticket
    trigger.record_labels(["a"] * 10)
    trigger.request()
    clock.now += 10_000
    assert trigger.due() is None
    with pytest.raises(TrainingInProgressError):
        trigger.start()
    trigger.finish(ticket, succeeded=True)
    # Labels that arrived during the training count toward the next one.
    assert trigger.new_labels == 10
    assert trigger.due() is TriggerReason.ON_DEMAND


def test_start_when_nothing_is_due_and_wrong_ticket() -> None:
    trigger, _ = make()
    with pytest.raises(NotDueError):
        trigger.start()
    trigger.record_labels(["a", "b"] * 25)
    ticket = trigger.start()
    trigger.finish(ticket, succeeded=True)
    with pytest.raises(ValueError, match="not the one running"):
        trigger.finish(ticket, succeeded=True)


def test_failure_keeps_labels_and_backs_off() -> None:
    trigger, clock = make(TriggerPolicy(first_model_labels=2, failure_backoff_seconds=60))
    trigger.record_labels(["a", "b"])
    ticket = trigger.start()
    trigger.finish(ticket, succeeded=False)
    assert not trigger.has_model
    assert trigger.due() is None
    clock.now += 60
    assert trigger.due() is TriggerReason.COLD_START


def test_failures_in_a_row_back_off_exponentially_up_to_the_cap() -> None:
    policy = TriggerPolicy(first_model_labels=2, failure_backoff_seconds=30, failure_backoff_max_seconds=200)
    trigger, clock = make(policy)
    trigger.record_labels(["a", "b"])
    waits = []
    for _ in range(5):
        ticket = trigger.start()
        trigger.finish(ticket, succeeded=False)
        waits.append(trigger.retry_delay)
        clock.now += trigger.retry_delay - 1
        assert trigger.due() is None  # not a second early
        clock.now += 1
        assert trigger.due() is TriggerReason.COLD_START
    assert waits == [30, 60, 120, 200, 200]
    # A success ends the run of failures: the next failure waits the base delay again.
    trigger.finish(trigger.start(), succeeded=True)
    trigger.record_labels(["a"] * 25)
    trigger.finish(trigger.start(), succeeded=False)
    assert trigger.retry_delay == 30


def test_failed_on_demand_is_retried() -> None:
    trigger, clock = make(TriggerPolicy(first_model_labels=2, failure_backoff_seconds=5), labels_in_model=0)
    trigger.record_labels(["a", "b"])
    trigger.request()
    ticket = trigger.start()
    trigger.finish(ticket, succeeded=False)
    clock.now += 5
    assert trigger.due() is TriggerReason.ON_DEMAND


def test_resume_after_restart_counts_from_the_serving_model() -> None:
    trigger, _ = make(TriggerPolicy(retrain_every_labels=100), labels_in_model=250)
    trigger.record_labels(["a", "b"] * 150)  # replayed labels
    assert trigger.has_model
    assert trigger.new_labels == 50
    assert trigger.due() is None
    trigger.record_labels(["a"] * 50)
    assert trigger.due() is TriggerReason.NEW_LABELS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_model_labels": 0},
        {"min_classes": 1},
        {"retrain_every_seconds": 0},
        {"retrain_every_labels": 0},
    ],
)
def test_bad_policy(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TriggerPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_schedule_grows_with_the_labels_the_last_model_saw() -> None:
    trigger, _ = make(TriggerPolicy(first_model_labels=50, retrain_every_labels=25, retrain_growth=0.2))
    trigger.record_labels(["a", "b"] * 25)
    train(trigger, TriggerReason.COLD_START)
    assert trigger.labels_due == 25, "early models are replaced every 25 labels"
    trigger.record_labels(["a"] * 24)
    assert trigger.due() is None
    trigger.record_labels(["b"])
    train(trigger, TriggerReason.NEW_LABELS)
    trigger.record_labels(["a"] * 925)  # the next training starts on 1,000 labels
    train(trigger, TriggerReason.NEW_LABELS)
    assert trigger.labels_due == 200, "20% of the 1,000 labels the last training started on"
    trigger.record_labels(["a"] * 199)
    assert trigger.due() is None
    trigger.record_labels(["b"])
    assert trigger.due() is TriggerReason.NEW_LABELS


def test_a_negative_growth_is_refused() -> None:
    with pytest.raises(ValueError, match="retrain_growth"):
        TriggerPolicy(retrain_growth=-0.1)
