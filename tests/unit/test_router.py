"""The routing handler with a plain Batch: what it emits for each answer of the final-label fence
(the fence itself runs in Redis: tests/integration/test_final_labels.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from labelloop.core.final_labels import Claim, Outcome
from labelloop.core.stream import Batch, Event
from labelloop.core.thresholds import Threshold
from labelloop.core.topics import LABELS, PREDICTIONS
from labelloop.routing.router import Router
from labelloop.v1 import common_pb2, events_pb2

PROJECT = common_pb2.Project(
    spec=common_pb2.ProjectSpec(project_id="p", labels=["ham", "spam"], audit_rate=0.0, annotators_per_task=1)
)


class Projects:
    def get(self, project_id: str) -> common_pb2.Project:
        return PROJECT


class Thresholds:
    def __init__(self, value: float) -> None:
        self.value = value

    def get(self, project_id: str) -> Threshold:
        return Threshold(self.value, model_version=1)

    def invalidate(self, project_id: str) -> None:
        pass


class Writer:
    """Answers every claim with `outcome` and emits like FinalLabelWriter.claim."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.claims: list[Claim] = []
        self.confirmed: list[events_pb2.LabelFinalized] = []

    def claim(self, claims: Sequence[Claim], emit, relabel=None, emitted=None) -> list[Outcome]:
        self.claims.extend(claims)
        for claim in claims:
            if claim.label is not None and self.outcome.publish:
                emit(LABELS, f"p/{claim.item_id}", claim.label)
        return [self.outcome for _ in claims]

    def confirm(self, labels) -> None:
        self.confirmed.extend(labels)


def batch_of(spam: float, rescore: bool = False) -> Batch:
    prediction = events_pb2.Prediction(model_name="p", model_version=1)
    prediction.ingested.item.item_id = "i"
    prediction.ingested.item.project_id = "p"
    if rescore:
        prediction.ingested.rescore.SetInParent()
    prediction.scores.add(label="ham", probability=1 - spam)
    prediction.scores.add(label="spam", probability=spam)
    return Batch(events=[Event(PREDICTIONS, prediction, b"p/i", 0, 0, b"", 0)])


def route(outcome: Outcome, spam: float, rescore: bool = False) -> tuple[Batch, Writer]:
    writer = Writer(outcome)
    batch = batch_of(spam, rescore)
    Router(Projects(), Thresholds(0.6), writer, "seed")(batch)  # type: ignore[arg-type]
    for callback in batch.flushed:
        callback()
    return batch, writer


def emitted(batch: Batch) -> list[str]:
    return [topic.base for topic, _key, _message in batch.outputs]


@pytest.mark.parametrize(("outcome", "topics"), [(Outcome.NEW, ["labels"]), (Outcome.AGAIN, ["labels"])])
def test_a_new_or_unconfirmed_auto_label_is_published_and_confirmed(
    outcome: Outcome, topics: list[str]
) -> None:
    batch, writer = route(outcome, 0.9)
    assert emitted(batch) == topics
    assert [c.label.labels[0] for c in writer.claims if c.label] == ["spam"]
    assert [label.labels[0] for label in writer.confirmed] == ["spam"]


def test_an_auto_label_for_an_item_with_people_sends_its_task_again_not_a_label() -> None:
    batch, writer = route(Outcome.PEOPLE, 0.9)
    assert emitted(batch) == ["tasks"]
    task = batch.outputs[0][2]
    assert (
        task.task_id == "i" and task.reason == events_pb2.TASK_REASON_UNCERTAIN and task.HasField("enqueue")
    )
    assert writer.confirmed == []


@pytest.mark.parametrize("outcome", [Outcome.DONE, Outcome.CONFLICT])
def test_a_published_or_conflicting_auto_label_emits_nothing(outcome: Outcome) -> None:
    batch, _ = route(outcome, 0.9)
    assert emitted(batch) == []


def test_an_uncertain_item_is_reserved_for_people_unless_already_final() -> None:
    batch, writer = route(Outcome.NEW, 0.5)
    assert emitted(batch) == ["tasks"] and writer.claims[0].label is None
    batch, _ = route(Outcome.FINAL, 0.5)
    assert emitted(batch) == []


def test_a_rescore_the_model_is_sure_of_is_a_withdrawal_and_claims_nothing() -> None:
    batch, writer = route(Outcome.NEW, 0.9, rescore=True)
    assert emitted(batch) == ["tasks"] and writer.claims == []
    withdrawal = batch.outputs[0][2]
    assert withdrawal.WhichOneof("command") == "withdraw"
    assert withdrawal.withdraw.label.labels == ["spam"]
    assert withdrawal.withdraw.label.ingested.WhichOneof("purpose") == "arrival"
    batch, _ = route(Outcome.NEW, 0.5, rescore=True)
    assert emitted(batch) == [], "not sure: the task keeps waiting"


class Fixed:
    def __init__(self, value: Threshold) -> None:
        self.value = value

    def get(self, project_id: str) -> Threshold:
        return self.value

    def invalidate(self, project_id: str) -> None:
        pass


@pytest.mark.parametrize(
    ("ham", "withdrawn"),
    # serving rule: 0.6 for everything; rescores: 0.8, and 0.95 for "spam"
    [(0.7, False), (0.85, True), (0.1, False), (0.03, True)],
)
def test_a_rescore_must_also_reach_its_own_stricter_thresholds_and_new_items_do_not(
    ham: float, withdrawn: bool
) -> None:
    rule = Threshold(0.6, model_version=1, rescore_threshold=0.8, rescore_class_thresholds={"spam": 0.95})
    batch = batch_of(1 - ham, rescore=True)
    Router(Projects(), Fixed(rule), Writer(Outcome.NEW), "seed")(batch)  # type: ignore[arg-type]
    assert emitted(batch) == (["tasks"] if withdrawn else [])
    if withdrawn:
        label = batch.outputs[0][2].withdraw.label
        assert label.threshold == pytest.approx(0.95 if ham < 0.5 else 0.8)
    new_item = batch_of(1 - ham)
    writer = Writer(Outcome.NEW)
    Router(Projects(), Fixed(rule), writer, "seed")(new_item)  # type: ignore[arg-type]
    assert [c.label is not None for c in writer.claims] == [max(ham, 1 - ham) >= 0.6]


@pytest.mark.parametrize("audit_rate", [0.0, 1.0])
def test_a_withdrawal_drawn_for_an_audit_carries_the_audit_of_its_label(audit_rate: float) -> None:
    """A rescore's auto-label is audited as a new item's would be: under routing's audit draw the
    withdrawal carries the audit task (queued by human-tasks once the label is published) and the
    label says it is audited; outside the draw neither. Before, withdrawn labels were never audited."""
    project = common_pb2.Project(
        spec=common_pb2.ProjectSpec(
            project_id="p", labels=["ham", "spam"], audit_rate=audit_rate, annotators_per_task=2
        )
    )
    projects = Projects()
    projects.get = lambda project_id: project  # type: ignore[method-assign]
    batch = batch_of(0.9, rescore=True)
    Router(projects, Thresholds(0.6), Writer(Outcome.NEW), "seed")(batch)  # type: ignore[arg-type]

    assert emitted(batch) == ["tasks"]
    withdrawal = batch.outputs[0][2]
    assert withdrawal.WhichOneof("command") == "withdraw"
    assert withdrawal.withdraw.label.audited is (audit_rate == 1.0)
    if audit_rate == 0.0:
        assert not withdrawal.withdraw.HasField("audit")
        return
    audit = withdrawal.withdraw.audit
    assert audit.task_id == "i:audit" and audit.WhichOneof("command") == "enqueue"
    assert audit.reason == events_pb2.TASK_REASON_AUDIT and list(audit.audited_labels) == ["spam"]
    assert audit.answer_probability == 1.0 and audit.annotators_required == 2
    assert audit.ingested.WhichOneof("purpose") == "arrival", "the item's audit, not the rescore command"
    assert audit.prediction.model_version == 1 and audit.priority == 1.0


@pytest.mark.parametrize("multi", [False, True])
def test_an_audit_task_names_the_auto_label_it_audits(multi: bool) -> None:
    """The audit's task carries routing's auto-label (a multi-label project's whole label list),
    and the person's answer records it as `audited_labels`; before, a multi-label audit named
    only the model's top label."""
    from labelloop.human_tasks.api import describe_routing

    spec = common_pb2.ProjectSpec(
        project_id="p", labels=["ham", "spam", "promo"], audit_rate=1.0, annotators_per_task=1
    )
    threshold = Threshold(0.6, model_version=1)
    if multi:
        spec.task_type = common_pb2.TASK_TYPE_MULTI_LABEL
        threshold = Threshold(
            label_upper=dict.fromkeys(spec.labels, 0.6),
            label_lower=dict.fromkeys(spec.labels, 0.4),
            model_version=1,
        )
    project = common_pb2.Project(spec=spec)
    projects, thresholds = Projects(), Thresholds(0.6)
    projects.get = lambda project_id: project  # type: ignore[method-assign]
    thresholds.get = lambda project_id: threshold  # type: ignore[method-assign]
    prediction = events_pb2.Prediction(model_name="p", model_version=1)
    prediction.ingested.item.item_id = "i"
    prediction.ingested.item.project_id = "p"
    # Multi-label: "spam" and "promo" confidently on (the top label, "promo", alone is not the
    # auto-label), "ham" confidently off. Single-label: "spam".
    for label, p in (("ham", 0.05), ("spam", 0.75), ("promo", 0.9 if multi else 0.2)):
        prediction.scores.add(label=label, probability=p)
    batch = Batch(events=[Event(PREDICTIONS, prediction, b"p/i", 0, 0, b"", 0)])
    Router(projects, thresholds, Writer(Outcome.NEW), "seed")(batch)  # type: ignore[arg-type]

    tasks = [m for topic, _key, m in batch.outputs if topic.base == "tasks"]
    assert [t.reason for t in tasks] == [events_pb2.TASK_REASON_AUDIT]
    expected = ["spam", "promo"] if multi else ["spam"]
    assert list(tasks[0].audited_labels) == expected
    answer = events_pb2.AnnotationSubmitted(item_id="i", project_id="p", labels=expected, audit=True)
    describe_routing(answer, tasks[0], multi)
    assert list(answer.audited_labels) == expected
