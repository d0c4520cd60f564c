"""The human-tasks consume loop with a plain Batch and a fake queue: what a deploy sends back, and
what a withdrawal publishes."""

from __future__ import annotations

import pytest

from labelloop.core.final_labels import Outcome
from labelloop.core.stream import Batch, Event
from labelloop.core.topics import ITEMS, MODELS, TASKS
from labelloop.human_tasks.handler import TaskHandler
from labelloop.v1 import events_pb2


class Queue:
    def __init__(self, waiting: list[events_pb2.TaskRouted]) -> None:
        self.waiting = waiting

    def untouched(self, project_id: str, limit: int) -> list[events_pb2.TaskRouted]:
        return self.waiting[:limit]


class Writer:
    def finalize(self, labels, emit, over_people: bool = False, emitted=None) -> list:  # type: ignore[no-untyped-def]
        assert not labels  # no withdrawal in these batches
        return []


def task(item_id: str) -> events_pb2.TaskRouted:
    t = events_pb2.TaskRouted(task_id=item_id)
    t.ingested.item.item_id = item_id
    t.ingested.item.project_id = "p"
    t.ingested.arrival.SetInParent()
    return t


def test_a_deploy_sends_up_to_the_limit_of_waiting_tasks_back_as_rescores_of_their_items() -> None:
    handler = TaskHandler(Queue([task("a"), task("b"), task("c")]), Writer(), rescore_limit=2)  # type: ignore[arg-type]
    deployed = events_pb2.ModelEvent(project_id="p", kind=events_pb2.MODEL_EVENT_KIND_DEPLOYED)
    batch = Batch(events=[Event(MODELS, deployed, b"p", 0, 0, b"", 0)])
    handler(batch)
    sent = {m.item.item_id: m for topic, _key, m in batch.outputs if topic is ITEMS}
    assert sent.keys() == {"a", "b"}
    assert all(m.HasField("rescore") and m.rescore.HasField("requested_at") for m in sent.values())
    assert all(m.item.project_id == "p" for m in sent.values())


class Withdrawing:
    """A queue whose `withdraw` answers `taken` (the task was untouched), recording the calls."""

    def __init__(self, taken: bool) -> None:
        self.taken = taken
        self.enqueued: list[events_pb2.TaskRouted] = []

    def enqueue(self, tasks: list[events_pb2.TaskRouted]) -> int:
        self.enqueued.extend(tasks)
        return len(tasks)

    def withdraw(self, project_id: str, item_id: str) -> bool:
        return self.taken


class Fence:
    """Answers every label with `outcome` and emits it when that publishes, like FinalLabelWriter."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def finalize(self, labels, emit, over_people: bool = False, emitted=None) -> list[Outcome]:  # type: ignore[no-untyped-def]
        assert over_people
        return [self.outcome for _ in labels]

    def confirm(self, labels) -> None:  # type: ignore[no-untyped-def]
        pass


def withdrawal(audited: bool) -> events_pb2.TaskRouted:
    t = task("i")
    t.withdraw.label.ingested.CopyFrom(t.ingested)
    t.withdraw.label.labels.append("spam")
    t.withdraw.label.audited = audited
    if audited:
        audit = task("i")
        audit.task_id = "i:audit"
        audit.reason = events_pb2.TASK_REASON_AUDIT
        audit.enqueue.SetInParent()
        t.withdraw.audit.CopyFrom(audit)
    return t


@pytest.mark.parametrize(
    ("taken", "outcome", "audited", "audits"),
    [
        (True, Outcome.NEW, True, 1),
        (True, Outcome.AGAIN, True, 1),  # a redelivery: queued again, idempotently
        (True, Outcome.NEW, False, 0),  # outside the audit draw
        (True, Outcome.CONFLICT, True, 0),  # the item had another final label: nothing to audit
        (False, Outcome.NEW, True, 0),  # someone leased the task: people keep it
    ],
)
def test_a_withdrawal_sends_its_audit_to_tasks_only_when_its_label_is_published(
    taken: bool, outcome: Outcome, audited: bool, audits: int
) -> None:
    handler = TaskHandler(Withdrawing(taken), Fence(outcome), rescore_limit=0)  # type: ignore[arg-type]
    batch = Batch(events=[Event(TASKS, withdrawal(audited), b"p/i", 0, 0, b"", 0)])
    handler(batch)
    sent = [m for topic, _key, m in batch.outputs if topic is TASKS]
    assert len(sent) == audits
    for audit in sent:
        assert audit.task_id == "i:audit" and audit.reason == events_pb2.TASK_REASON_AUDIT
        assert audit.WhichOneof("command") == "enqueue"
