"""The human-labeled set: weights from the routing probability, audits joined from two topics."""

from __future__ import annotations

from dataclasses import replace

import pytest

from labelloop.core.answers import Answer, answer_of
from labelloop.retraining.dataset import LabeledSet
from labelloop.v1 import common_pb2, events_pb2


def label(item_id: str, text: str, value: str, source: int, **fields: object) -> events_pb2.LabelFinalized:
    event = events_pb2.LabelFinalized(labels=[value], source=source, **fields)  # type: ignore[arg-type]
    event.ingested.item.item_id = item_id
    event.ingested.item.project_id = "p"
    event.ingested.item.content.text = text
    return event


def audit_answer(item_id: str, consensus: str, predicted: str = "a") -> events_pb2.AnnotationSubmitted:
    return events_pb2.AnnotationSubmitted(
        task_id=f"{item_id}:audit",
        item_id=item_id,
        project_id="p",
        labels=[consensus],
        reason=events_pb2.TASK_REASON_AUDIT,
        answer_probability=0.04,
        model_version=3,
        predicted_label=predicted,
        predicted_confidence=0.97,
        consensus_labels=[consensus],
    )


def test_human_labels_weigh_the_inverse_of_their_routing_probability() -> None:
    labeled = LabeledSet(0.0)
    assert labeled.apply(label("u", "t", "a", common_pb2.LABEL_SOURCE_HUMAN, answer_probability=1.0)) == "a"
    assert labeled.apply(label("e", "t", "b", common_pb2.LABEL_SOURCE_HUMAN, answer_probability=0.05)) == "b"
    assert labeled.apply(label("old", "t", "b", common_pb2.LABEL_SOURCE_HUMAN)) == "b"  # before the field
    weights = {x.item_id: x.weight for x in labeled.snapshot().train}
    assert weights == {"u": 1.0, "e": pytest.approx(20.0), "old": 1.0}
    assert labeled.snapshot().explored == 1
    # Model labels are never training data unless audited and answered.
    assert labeled.apply(label("m", "t", "a", common_pb2.LABEL_SOURCE_MODEL)) is None
    assert len(labeled) == 3


@pytest.mark.parametrize("label_first", [True, False])
def test_an_audit_becomes_a_human_label_when_both_halves_arrive(label_first: bool) -> None:
    labeled = LabeledSet(0.0)
    auto = label("x", "the text", "a", common_pb2.LABEL_SOURCE_MODEL, audited=True)
    answer = audit_answer("x", "b")
    first, second = (auto, answer) if label_first else (answer, auto)
    apply = {id(auto): labeled.apply, id(answer): labeled.apply_audit}
    assert apply[id(first)](first) is None  # type: ignore[operator]
    assert len(labeled) == 0
    assert apply[id(second)](second) == "b"  # type: ignore[operator]
    [entry] = labeled.snapshot().train
    assert (entry.item_id, entry.text, entry.label, entry.weight) == (
        "x",
        "the text",
        "b",
        pytest.approx(25.0),
    )
    # A redelivery adds nothing.
    assert labeled.apply_audit(answer) is None and labeled.apply(auto) is None
    assert len(labeled) == 1


def test_pending_audits_are_bounded() -> None:
    labeled = LabeledSet(0.0, max_pending_audits=2)
    for i in range(5):
        labeled.apply_audit(audit_answer(f"x{i}", "a"))
    # Only the two newest answers wait; the oldest text arriving now finds nothing to join.
    assert labeled.apply(label("x0", "t", "a", common_pb2.LABEL_SOURCE_MODEL, audited=True)) is None
    assert labeled.apply(label("x4", "t", "a", common_pb2.LABEL_SOURCE_MODEL, audited=True)) == "a"


def test_answer_of_reads_only_completed_tasks_of_a_model() -> None:
    answer = answer_of(audit_answer("x", "a", predicted="a"))
    assert answer is not None
    assert (answer.correct, answer.audit, answer.weight, answer.model_version) == (True, True, 25.0, 3)
    # Its predicted label (whose class threshold applied) survives the Redis form, "|" and all;
    # an answer stored before the label was kept reads as "" (the global threshold).
    assert answer.predicted_label == "a"
    assert Answer.decode(answer.encode()) == answer
    piped = replace(answer, predicted_label="x|y")
    assert Answer.decode(piped.encode()) == piped
    assert Answer.decode("3|0.9|1|25.0|1").predicted_label == ""
    wrong = answer_of(audit_answer("x", "b", predicted="a"))
    assert wrong is not None and not wrong.correct
    incomplete = audit_answer("x", "a")
    del incomplete.consensus_labels[:]
    assert answer_of(incomplete) is None
    no_model = audit_answer("x", "a")
    no_model.model_version = 0
    assert answer_of(no_model) is None
