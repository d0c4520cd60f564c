"""A vote cast after routing decided (the LLM source's, on `votes`) routes the item again, through
the real Kafka and Redis: under a threshold calibrated on the posterior, a trusted vote that
lifts the item over it withdraws the waiting task and publishes the auto-label; a task someone
has leased stays with people. Claims are checked on the RAW labels topic (one record per item)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_final_labels import LABELS, PROJECT, Loop, key, one_record_each, prediction

from labelloop.core import redis_store, stream
from labelloop.core.final_labels import FinalLabelWriter
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.projects import ProjectStore
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import MODELS, PREDICTIONS, TASKS, VOTES, Topic
from labelloop.human_tasks.api import HumanTaskApi
from labelloop.human_tasks.handler import TaskHandler
from labelloop.human_tasks.queue import TaskQueue
from labelloop.routing.router import Router
from labelloop.v1 import common_pb2, events_pb2

LLM = "llm:sim"


@pytest.fixture
def loop(stack, topic_prefix: str, redis_prefix: str) -> Iterator[Loop]:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    client = redis_store.connect(stack.redis_url, stack.redis_password)
    projects = ProjectStore(client, redis_prefix, cache_s=0)
    projects.create(common_pb2.ProjectSpec(project_id=PROJECT, labels=LABELS, audit_rate=0.0))
    thresholds = ThresholdStore(client, redis_prefix, cache_s=0)
    writer = FinalLabelWriter(client, redis_prefix)
    queue = TaskQueue(client, redis_prefix, lease_ttl_s=60)
    label_model = LabelModelStore(client, redis_prefix, cache_s=0)
    for n in range(40):  # people found the LLM right 38 times in 40
        truth = "spam" if n % 2 else "ham"
        vote = truth if n >= 2 else ("ham" if truth == "spam" else "spam")
        label_model.observe(PROJECT, f"past-{n}", {LLM: vote}, truth, [])

    def processor(name: str, inputs: list[Topic], handler) -> stream.StreamProcessor:
        return stream.StreamProcessor(
            service=name,
            bootstrap=stack.bootstrap_servers,
            prefix=topic_prefix,
            inputs=inputs,
            group_id=f"{topic_prefix}.{name}",
            handler=handler,
            producer=stream.EventProducer(stack.bootstrap_servers, topic_prefix, name),
            poll_timeout_ms=100,
        )

    router = Router(projects, thresholds, writer, "seed", label_model)
    routing = processor("routing", [PREDICTIONS, MODELS, VOTES], router)
    human_tasks = processor("human_tasks", [TASKS, MODELS], TaskHandler(queue, writer, rescore_limit=100))
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    api_producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "human_tasks-api")
    api = HumanTaskApi(queue, projects, writer, api_producer)
    yield Loop(stack, topic_prefix, producer, routing, human_tasks, thresholds, queue, api, writer)
    for closable in (routing, human_tasks, routing.producer, human_tasks.producer, producer, api_producer):
        closable.close()
    keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def vote(item_id: str, label: str, spam: float) -> events_pb2.VoteCast:
    return events_pb2.VoteCast(
        project_id=PROJECT,
        item_id=item_id,
        vote=events_pb2.SourceVote(source=LLM, label=label),
        prediction=prediction(item_id, spam),
    )


def test_a_late_trusted_vote_withdraws_the_waiting_task_and_auto_labels_once(loop: Loop) -> None:
    loop.thresholds.set(PROJECT, Threshold(0.9, {}, 1, 0.0, sources_min_judged=5))
    for item_id in ("a", "b", "c"):
        loop.send(PREDICTIONS, key(item_id), prediction(item_id, 0.6))
    loop.settle(lambda: loop.queued() == 3)  # all uncertain: three tasks wait
    started = loop.queue.lease(PROJECT, "ann-1")  # someone starts one of them
    assert started is not None
    taken = started.task.ingested.item.item_id
    waiting = sorted({"a", "b", "c"} - {taken})
    for item_id in ("a", "b", "c"):
        loop.send(VOTES, key(item_id), vote(item_id, "spam", 0.6))
    loop.send(VOTES, key(waiting[0]), vote(waiting[0], "spam", 0.6))  # redelivered
    loop.settle(lambda: len(loop.records()) == 2 and loop.queued() == 0)
    records = one_record_each(loop)
    assert sorted(records) == waiting
    for item_id in waiting:
        assert list(records[item_id].labels) == ["spam"]
        assert records[item_id].source == common_pb2.LABEL_SOURCE_MODEL
        assert records[item_id].confidence > 0.9
    loop.queue.release(started.lease_id, "ann-1")
    assert loop.answer("ann-1", "ham")  # the started one stays with people
    loop.settle(lambda: len(loop.records()) == 3)
    records = one_record_each(loop)
    assert records[taken].source == common_pb2.LABEL_SOURCE_HUMAN and list(records[taken].labels) == ["ham"]


def test_a_late_vote_changes_nothing_under_a_threshold_calibrated_on_the_model(loop: Loop) -> None:
    loop.thresholds.set(PROJECT, Threshold(0.9, {}, 1, 0.0))
    loop.send(PREDICTIONS, key("d"), prediction("d", 0.6))
    loop.settle(lambda: loop.queued() == 1)
    loop.send(VOTES, key("d"), vote("d", "spam", 0.6))
    loop.send(PREDICTIONS, key("e"), prediction("e", 0.6))  # a marker behind the vote
    loop.settle(lambda: loop.queued() == 2)
    assert loop.records() == {}
