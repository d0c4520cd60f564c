"""The multi-label routing decision: every label decided, or people with the uncertain ones marked."""

import pytest

from labelloop.core.thresholds import Threshold
from labelloop.routing.decisions import audit_draw, decide_labels, label_state
from labelloop.v1 import common_pb2, events_pb2

LABELS = ["sports", "politics", "tech"]


def project(audit_rate: float = 0.0) -> common_pb2.Project:
    return common_pb2.Project(
        spec=common_pb2.ProjectSpec(
            project_id="p",
            labels=LABELS,
            task_type=common_pb2.TASK_TYPE_MULTI_LABEL,
            audit_rate=audit_rate,
        )
    )


def prediction(item_id: str, probs: list[float] | None) -> events_pb2.Prediction:
    p = events_pb2.Prediction()
    p.ingested.item.item_id = item_id
    if probs is None:
        p.no_model = True
    else:
        for label, prob in zip(LABELS, probs, strict=True):
            p.scores.add(label=label, probability=prob)
    return p


BOUNDS = Threshold(
    label_upper={"sports": 0.9, "politics": 0.8, "tech": 0.95},
    label_lower={"sports": 0.1, "politics": 0.2, "tech": 0.05},
)


def test_label_state_reads_each_labels_own_pair() -> None:
    assert label_state(0.9, "sports", BOUNDS) is True  # at the upper threshold: on
    assert label_state(0.1, "sports", BOUNDS) is False  # at the lower threshold: off
    assert label_state(0.5, "sports", BOUNDS) is None
    assert label_state(0.85, "politics", BOUNDS) is True
    assert label_state(0.85, "tech", BOUNDS) is None
    assert label_state(0.99, "unknown", BOUNDS) is None  # no pair: never confident


def test_every_label_confident_is_an_auto_label_with_the_on_labels() -> None:
    d = decide_labels(prediction("1", [0.95, 0.1, 0.97]), project(), BOUNDS, "s")
    assert d.auto_labels == ("sports", "tech")
    assert d.accepted == ("sports", "tech")
    assert d.task_reason == events_pb2.TASK_REASON_UNSPECIFIED
    assert d.uncertain_labels == ()
    assert d.confidence == pytest.approx(0.9)  # the least sure decision: politics off at 0.1


def test_all_off_is_an_auto_label_with_no_labels() -> None:
    d = decide_labels(prediction("1", [0.01, 0.02, 0.01]), project(), BOUNDS, "s")
    assert d.accepted == ()
    assert d.task_reason == events_pb2.TASK_REASON_UNSPECIFIED


def test_one_uncertain_label_sends_the_item_to_people_with_that_label_marked() -> None:
    d = decide_labels(prediction("1", [0.95, 0.5, 0.97]), project(), BOUNDS, "s")
    assert d.accepted is None
    assert d.task_reason == events_pb2.TASK_REASON_UNCERTAIN
    assert d.uncertain_labels == ("politics",)
    assert d.priority == pytest.approx(1.0)  # 0.5 is a coin flip


def test_priority_is_the_largest_per_label_uncertainty() -> None:
    d = decide_labels(prediction("1", [0.95, 0.7, 0.5 + 0.4]), project(), BOUNDS, "s")
    assert d.uncertain_labels == ("politics", "tech")
    assert d.priority == pytest.approx(1.0 - abs(2 * 0.7 - 1))


def test_no_model_and_no_thresholds_mark_every_label() -> None:
    d = decide_labels(prediction("1", None), project(), BOUNDS, "s")
    assert (d.task_reason, d.uncertain_labels) == (events_pb2.TASK_REASON_NO_MODEL, tuple(LABELS))
    d = decide_labels(prediction("1", [0.99, 0.01, 0.99]), project(), Threshold(), "s")
    assert (d.task_reason, d.uncertain_labels) == (events_pb2.TASK_REASON_UNCERTAIN, tuple(LABELS))


def test_the_global_threshold_plays_no_part_for_multi_label() -> None:
    t = Threshold(0.5)  # a single-label threshold only: nothing is confident
    d = decide_labels(prediction("1", [0.99, 0.01, 0.99]), project(), t, "s")
    assert d.accepted is None


def test_confident_items_are_explored_and_audited_by_the_same_draw() -> None:
    t = Threshold(label_upper=BOUNDS.label_upper, label_lower=BOUNDS.label_lower, exploration_rate=0.3)
    reasons = {}
    for i in range(400):
        item = str(i)
        d = decide_labels(prediction(item, [0.95, 0.1, 0.97]), project(audit_rate=0.2), t, "s")
        u = audit_draw(item, "s")
        expected = (
            events_pb2.TASK_REASON_EXPLORATION
            if u < 0.3
            else events_pb2.TASK_REASON_AUDIT
            if u < 0.5
            else events_pb2.TASK_REASON_UNSPECIFIED
        )
        assert d.task_reason == expected
        assert d.answer_probability == pytest.approx(0.5)
        assert (d.accepted is None) == (expected == events_pb2.TASK_REASON_EXPLORATION)
        reasons[expected] = reasons.get(expected, 0) + 1
    assert len(reasons) == 3


def test_a_multi_label_text_project_is_accepted_and_keeps_the_label_rules() -> None:
    from labelloop.core.errors import InvalidArgument
    from labelloop.core.projects import is_multi_label, normalize_spec

    spec = normalize_spec(
        common_pb2.ProjectSpec(project_id="m", labels=LABELS, task_type=common_pb2.TASK_TYPE_MULTI_LABEL)
    )
    assert is_multi_label(spec) and spec.modality == common_pb2.MODALITY_TEXT
    for bad, field in [
        (common_pb2.ProjectSpec(project_id="m", labels=["a", "a"]), "spec.labels"),
        (common_pb2.ProjectSpec(project_id="m", labels=["a|b", "c"]), "spec.labels"),
        (
            common_pb2.ProjectSpec(project_id="m", labels=LABELS, modality=common_pb2.MODALITY_IMAGE),
            "spec.task_type",
        ),
    ]:
        bad.task_type = common_pb2.TASK_TYPE_MULTI_LABEL
        with pytest.raises(InvalidArgument) as info:
            normalize_spec(bad)
        assert info.value.field == field
