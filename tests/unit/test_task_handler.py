"""The human-tasks consume loop with a plain Batch and a fake queue: what a deploy sends back."""

from __future__ import annotations

from labelloop.core.stream import Batch, Event
from labelloop.core.topics import ITEMS, MODELS
from labelloop.human_tasks.handler import TaskHandler
from labelloop.v1 import events_pb2


class Queue:
    def __init__(self, waiting: list[events_pb2.TaskRouted]) -> None:
        self.waiting = waiting

    def untouched(self, project_id: str, limit: int) -> list[events_pb2.TaskRouted]:
        return self.waiting[:limit]


class Writer:
    def finalize(self, labels, emit, over_people: bool = False) -> list:  # type: ignore[no-untyped-def]
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
