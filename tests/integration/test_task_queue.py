"""The human-task queue's order in the real Redis: priority first, then first come, first served.

Ties used to be broken by Redis's member order (the item id), which sent people one class at a
time on datasets whose ids start with the class ("business/001"), so the first models knew one or
two classes and auto-labeled with them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labelloop.core import redis_store
from labelloop.human_tasks.queue import TaskQueue
from labelloop.stack import LocalStack
from labelloop.v1 import common_pb2, events_pb2


@pytest.fixture
def queue(stack: LocalStack, redis_prefix: str) -> Iterator[TaskQueue]:
    client = redis_store.connect(stack.redis_url, stack.redis_password)
    yield TaskQueue(client, redis_prefix, lease_ttl_s=60)
    keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def task(item_id: str, priority: float) -> events_pb2.TaskRouted:
    item = common_pb2.Item(item_id=item_id, project_id="p", content=common_pb2.Content(text=item_id))
    return events_pb2.TaskRouted(
        task_id=item_id,
        ingested=events_pb2.ItemIngested(item=item),
        priority=priority,
        annotators_required=1,
    )


def leased_ids(queue: TaskQueue, n: int) -> list[str]:
    out = []
    for _ in range(n):
        lease = queue.lease("p", "ann")
        assert lease is not None, f"the queue ran dry after {out}"
        out.append(lease.task.ingested.item.item_id)
    return out


def test_equal_priorities_are_served_in_arrival_order_not_by_id(queue: TaskQueue) -> None:
    arrivals = ["tech/3", "business/9", "sport/1", "business/2", "politics/5"]
    queue.enqueue([task(i, 1.0) for i in arrivals[:3]])
    queue.enqueue([task(i, 1.0) for i in arrivals[3:]])  # a later batch comes later
    assert leased_ids(queue, 5) == arrivals
    assert queue.lease("p", "ann") is None


def test_priority_comes_first_and_a_released_task_keeps_its_place(queue: TaskQueue) -> None:
    queue.enqueue([task("a", 0.2), task("b", 0.9), task("c", 0.2), task("d", 0.90001)])
    first = queue.lease("p", "ann-1")
    assert first is not None and first.task.task_id == "d", "0.90001 outranks 0.9"
    queue.release(first.lease_id, "ann-1")
    assert leased_ids(queue, 4) == ["d", "b", "a", "c"]


def test_item_ids_that_look_like_task_keys_are_ordinary_tasks(queue: TaskQueue) -> None:
    # Before: the labeling task of item "x:audit" was the audit task of "x" (one was dropped),
    # and "x:who" / "x:answers" were the sets of task "x" (WRONGTYPE for the whole project).
    items = ["x", "x:audit", "x:who", "x:answers"]
    audit = task("x", 0.5)
    audit.task_id, audit.reason = "x:audit", events_pb2.TASK_REASON_AUDIT
    assert queue.enqueue([task(i, 1.0) for i in items] + [audit]) == 5
    leased = []
    for _ in range(5):
        lease = queue.lease("p", "ann")
        assert lease is not None, f"the queue ran dry after {leased}"
        leased.append((lease.task.ingested.item.item_id, lease.task.reason))
        answered = queue.answer(lease.lease_id, "ann", "a")
        assert answered.complete and answered.answers == {"ann": "a"}
        queue.finish(answered.task)
    assert sorted(leased) == sorted([(i, 0) for i in items] + [("x", events_pb2.TASK_REASON_AUDIT)])
    assert queue.lease("p", "ann") is None
