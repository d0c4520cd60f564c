"""Exactly-once final labels under a crash between produce and commit (Kafka transactions).

Routing's real handler runs in its stream processor against the real Kafka and Redis. The first
process "dies" (kill -9 simulated: its records reach the broker, then it stops before committing
its transaction or offsets, and aborts nothing) with the final-label fence still in state `D`
(decided, publication unconfirmed). A second process of the same service (same group, same
transactional.id) gets the predictions again and publishes the same decisions again.

Records are counted in the RAW labels topic: read_committed (what every consumer of the pipeline
reads) shows one label per item; read_uncommitted shows the dead process's aborted attempt too,
which proves the repeat happened and that the first assertion can fail. Without transactions
(`LABELLOOP_KAFKA_TRANSACTIONS=false`) the repeat is visible to every reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support import wait_until

from labelloop.core import redis_store, stream
from labelloop.core.final_labels import FinalLabelWriter
from labelloop.core.label_log import label_records
from labelloop.core.projects import ProjectStore
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import MODELS, PREDICTIONS, item_key
from labelloop.routing.router import Router
from labelloop.v1 import common_pb2, events_pb2

PROJECT = "exactly-once"
ITEMS = [f"i{n}" for n in range(12)]


class Killed(BaseException):
    """The simulated kill -9 (a BaseException, like SystemExit: nothing catches it)."""


@dataclass
class Routing:
    stack: object
    prefix: str
    writer: FinalLabelWriter
    router: Router

    def processor(self, transactions: bool) -> stream.StreamProcessor:
        """A routing process; every one has the same group and transactional.id (a restart)."""
        name = "routing"
        tid = f"{self.prefix}.{name}.instance-0" if transactions else None
        return stream.StreamProcessor(
            service=name,
            bootstrap=self.stack.bootstrap_servers,  # type: ignore[attr-defined]
            prefix=self.prefix,
            inputs=[PREDICTIONS, MODELS],
            group_id=f"{self.prefix}.{name}",
            handler=self.router,
            producer=stream.EventProducer(
                self.stack.bootstrap_servers,  # type: ignore[attr-defined]
                self.prefix,
                name,
                transactional_id=tid,
            ),
            poll_timeout_ms=100,
        )

    def records(self, *, read_committed: bool) -> dict[str, list[events_pb2.LabelFinalized]]:
        return label_records(
            self.stack.bootstrap_servers,  # type: ignore[attr-defined]
            self.prefix,
            PROJECT,
            read_committed=read_committed,
        )


@pytest.fixture
def routing(stack, topic_prefix: str, redis_prefix: str) -> Iterator[Routing]:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    client = redis_store.connect(stack.redis_url, stack.redis_password)
    projects = ProjectStore(client, redis_prefix, cache_s=0)
    projects.create(common_pb2.ProjectSpec(project_id=PROJECT, labels=["ham", "spam"], audit_rate=0.0))
    thresholds = ThresholdStore(client, redis_prefix, cache_s=0)
    thresholds.set(PROJECT, Threshold(0.5, model_version=1))
    writer = FinalLabelWriter(client, redis_prefix)
    yield Routing(stack, topic_prefix, writer, Router(projects, thresholds, writer, "seed"))
    keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def prediction(item_id: str) -> events_pb2.Prediction:
    ingested = events_pb2.ItemIngested(
        item=common_pb2.Item(item_id=item_id, project_id=PROJECT, content=common_pb2.Content(text="hi"))
    )
    ingested.arrival.SetInParent()
    return events_pb2.Prediction(
        ingested=ingested,
        model_name=PROJECT,
        model_version=1,
        scores=[
            common_pb2.ClassScore(label="ham", probability=0.05),
            common_pb2.ClassScore(label="spam", probability=0.95),
        ],
    )


def kill_after_produce(processor: stream.StreamProcessor) -> None:
    """Make `processor` die once its batch's records are on the broker, before any commit:
    with transactions, before commit_transaction (and a dead process aborts nothing); without,
    right after the flush (before the offsets' commit and the fence's confirm)."""
    producer = processor.producer
    raw = producer._producer

    def die(*_args, **_kwargs) -> None:
        assert raw.flush(30) == 0, "the batch's records did not reach the broker"
        raise Killed

    if producer.transactional:
        producer.commit = die  # type: ignore[method-assign]
        producer.abort = lambda *_a, **_k: None  # type: ignore[method-assign]
    else:
        producer.flush = die  # type: ignore[method-assign]


def crash_then_restart(routing: Routing, transactions: bool) -> None:
    feeder = stream.EventProducer(routing.stack.bootstrap_servers, routing.prefix, "test")  # type: ignore[attr-defined]
    for item_id in ITEMS:
        feeder.send(PREDICTIONS, item_key(PROJECT, item_id), prediction(item_id))
    feeder.close()

    first = routing.processor(transactions)
    kill_after_produce(first)

    def runs_until_killed() -> bool:
        try:
            first.run_once()
        except Killed:
            return True
        return False

    wait_until(runs_until_killed, 60, message="the first process never produced a batch")
    decided = {item_id: routing.writer.state(PROJECT, item_id) for item_id in ITEMS}
    assert any(state and state.startswith("D") for state in decided.values()), (
        f"the crash left no unconfirmed decision: {decided}"
    )
    first.consumer.close()  # leaves the group (sooner than a session timeout); commits nothing

    second = routing.processor(transactions)  # transactions: aborts the first one's transaction
    try:
        wait_until(
            lambda: (
                second.run_once(),
                all(routing.writer.state(PROJECT, i) == "Emodel:spam" for i in ITEMS),
            )[1],
            60,
            message="the restarted process did not publish and confirm every label",
        )
    finally:
        second.close()
        second.producer.close()


def test_a_crash_between_produce_and_commit_leaves_one_committed_label_per_item(routing: Routing) -> None:
    crash_then_restart(routing, transactions=True)
    committed = routing.records(read_committed=True)
    assert set(committed) == set(ITEMS)
    many = {item: len(labels) for item, labels in committed.items() if len(labels) != 1}
    assert not many, f"read_committed sees more than one final label for: {many}"
    everything = routing.records(read_committed=False)
    repeated = {item for item, labels in everything.items() if len(labels) == 2}
    assert repeated, "the crashed attempt's records are in the log (aborted): the repeat happened"
    assert all(len(labels) <= 2 for labels in everything.values())


def test_without_transactions_the_repeat_is_visible_to_every_reader(routing: Routing) -> None:
    crash_then_restart(routing, transactions=False)
    committed = routing.records(read_committed=True)
    assert set(committed) == set(ITEMS)
    repeated = {item for item, labels in committed.items() if len(labels) > 1}
    assert repeated, "at-least-once: the batch published before the crash is published again"
