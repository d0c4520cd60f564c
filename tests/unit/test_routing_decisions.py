"""The routing decision: thresholds, priorities, audit sampling."""

import pytest

from labelloop.core.thresholds import NOTHING, Threshold
from labelloop.routing.decisions import SAMPLE_PRIORITY, audit_draw, decide, margin_priority
from labelloop.v1 import common_pb2, events_pb2


def project(audit_rate: float = 0.0) -> common_pb2.Project:
    return common_pb2.Project(
        spec=common_pb2.ProjectSpec(project_id="p", labels=["a", "b", "c"], audit_rate=audit_rate)
    )


def prediction(item_id: str, probs: list[float] | None) -> events_pb2.Prediction:
    p = events_pb2.Prediction()
    p.ingested.item.item_id = item_id
    if probs is None:
        p.no_model = True
    else:
        for label, prob in zip("abc", probs, strict=True):
            p.scores.add(label=label, probability=prob)
    return p


def test_no_model_goes_to_people() -> None:
    d = decide(prediction("1", None), project(), Threshold(0.5), "s")
    assert d.auto_label is None
    assert d.task_reason == events_pb2.TASK_REASON_NO_MODEL


def test_the_default_threshold_admits_nothing() -> None:
    d = decide(prediction("1", [1.0, 0.0, 0.0]), project(), Threshold(), "s")
    assert Threshold().threshold == NOTHING
    assert d.auto_label is None
    assert d.task_reason == events_pb2.TASK_REASON_UNCERTAIN


def test_confident_predictions_are_auto_labeled() -> None:
    d = decide(prediction("1", [0.05, 0.9, 0.05]), project(), Threshold(0.8), "s")
    assert (d.auto_label, d.task_reason) == ("b", events_pb2.TASK_REASON_UNSPECIFIED)
    assert d.confidence == pytest.approx(0.9)


def test_per_class_thresholds_override_the_global_one() -> None:
    t = Threshold(0.8, {"b": 0.95})
    assert decide(prediction("1", [0.05, 0.9, 0.05]), project(), t, "s").auto_label is None
    assert decide(prediction("1", [0.9, 0.05, 0.05]), project(), t, "s").auto_label == "a"


def test_priority_puts_the_smallest_margin_first() -> None:
    assert margin_priority([0.5, 0.5, 0.0]) == pytest.approx(1.0)
    assert margin_priority([0.9, 0.05, 0.05]) < margin_priority([0.6, 0.3, 0.1])


def test_exploration_and_audits_are_answered_first_whatever_the_confidence() -> None:
    # Their answers are the sample that moves the threshold: answered in arrival order, not the
    # least confident first (which would make the first answers a sample of the threshold's edge).
    t = Threshold(0.5, exploration_rate=0.3)
    priorities = {}
    for i in range(400):
        for confidence in (0.6, 0.99):
            rest = (1.0 - confidence) / 2
            d = decide(prediction(str(i), [confidence, rest, rest]), project(0.3), t, "s")
            if d.task_reason in (events_pb2.TASK_REASON_EXPLORATION, events_pb2.TASK_REASON_AUDIT):
                priorities.setdefault(d.task_reason, set()).add(d.priority)
    assert priorities == {
        events_pb2.TASK_REASON_EXPLORATION: {SAMPLE_PRIORITY},
        events_pb2.TASK_REASON_AUDIT: {SAMPLE_PRIORITY},
    }
    assert SAMPLE_PRIORITY == 1.0
    uncertain = decide(prediction("x", [0.45, 0.35, 0.2]), project(), t, "s")
    assert uncertain.priority == pytest.approx(margin_priority([0.45, 0.35, 0.2]))


def test_audits_are_sampled_at_the_rate_and_stable_per_item() -> None:
    t = Threshold(0.5)
    decisions = [decide(prediction(str(i), [0.9, 0.05, 0.05]), project(0.1), t, "s") for i in range(5000)]
    audits = sum(d.task_reason == events_pb2.TASK_REASON_AUDIT for d in decisions)
    assert 400 < audits < 600
    assert all(d.auto_label == "a" for d in decisions)
    assert audit_draw("42", "s") == audit_draw("42", "s")


def test_exploration_and_audits_draw_disjoint_shares_with_known_probabilities() -> None:
    # Above the threshold: 5% exploration (people label it, no auto-label), 2% audits (auto-label
    # and people), the rest auto; every task carries the probability 0.07 of being answered.
    t = Threshold(0.8, exploration_rate=0.05)
    counts = {"exploration": 0, "audit": 0, "auto": 0}
    n = 20_000
    for i in range(n):
        d = decide(prediction(f"item-{i}", [0.9, 0.05, 0.05]), project(audit_rate=0.02), t, "s")
        assert d.answer_probability == pytest.approx(0.07)
        if d.task_reason == events_pb2.TASK_REASON_EXPLORATION:
            assert d.auto_label is None
            counts["exploration"] += 1
        elif d.task_reason == events_pb2.TASK_REASON_AUDIT:
            assert d.auto_label == "a"
            counts["audit"] += 1
        else:
            assert d.auto_label == "a" and d.task_reason == events_pb2.TASK_REASON_UNSPECIFIED
            counts["auto"] += 1
    assert counts["exploration"] / n == pytest.approx(0.05, abs=0.006)
    assert counts["audit"] / n == pytest.approx(0.02, abs=0.004)
    # Below the threshold every item goes to people: probability 1.
    below = decide(prediction("x", [0.5, 0.3, 0.2]), project(audit_rate=0.02), t, "s")
    assert below.task_reason == events_pb2.TASK_REASON_UNCERTAIN and below.answer_probability == 1.0
    # The draw is fixed by the item id: a redelivered prediction gets the same decision.
    again = [decide(prediction("item-7", [0.9, 0.05, 0.05]), project(0.02), t, "s") for _ in range(3)]
    assert len({(d.auto_label, d.task_reason) for d in again}) == 1
