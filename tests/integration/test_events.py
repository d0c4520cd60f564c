"""Protobuf events through the real Kafka broker with the core producer and stream processor:
round trip, restart from the committed offset, dead letters."""

from __future__ import annotations

import threading

import pytest
from google.protobuf.message import Message
from support import wait_until

from labelloop.core import stream
from labelloop.core.errors import DependencyUnavailable, PoisonMessage
from labelloop.core.label_log import replay
from labelloop.core.topics import DEAD_LETTERS, ITEMS, MAX_MESSAGE_BYTES, PREDICTIONS, Topic
from labelloop.v1 import events_pb2


def item_event(i: int) -> events_pb2.ItemIngested:
    event = events_pb2.ItemIngested(channel="test")
    event.item.item_id = f"item-{i}"
    event.item.project_id = "p"
    event.item.content.text = f"text {i}"
    return event


def echo_to_predictions(seen: list[str]):
    """A handler that records each item id and emits a prediction for it."""

    def handle(batch: stream.Batch) -> None:
        for event in batch.events:
            seen.append(event.message.item.item_id)
            batch.emit(PREDICTIONS, event.message.item.item_id, events_pb2.Prediction(ingested=event.message))

    return handle


def processor(stack, prefix: str, handler, group: str = "g", **kw) -> stream.StreamProcessor:
    producer = stream.EventProducer(stack.bootstrap_servers, prefix, "test")
    return stream.StreamProcessor(
        service="test",
        bootstrap=stack.bootstrap_servers,
        prefix=prefix,
        inputs=[ITEMS],
        group_id=f"{prefix}.{group}",
        handler=handler,
        producer=producer,
        poll_timeout_ms=100,
        **kw,
    )


def drain(proc: stream.StreamProcessor, until, timeout: float = 60) -> None:
    wait_until(
        lambda: (proc.run_once(), until())[1], timeout, message="stream did not reach the expected state"
    )


def read_all(stack, prefix: str, topic) -> list[Message]:
    return list(replay(stack.bootstrap_servers, prefix, topic))


def test_events_round_trip_and_a_restart_resumes_without_loss_or_duplication(stack, topic_prefix) -> None:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    for i in range(50):
        producer.send(ITEMS, f"item-{i}", item_event(i))
    producer.flush()

    seen: list[str] = []
    first = processor(stack, topic_prefix, echo_to_predictions(seen), max_poll_records=20)
    # batches of at most 20: the first consumer stops part way, with some of its batches committed
    drain(first, lambda: len(seen) >= 20)
    first.close()  # a restart: the next consumer of the group resumes from the committed offset
    stopped_at = len(seen)

    for i in range(50, 80):
        producer.send(ITEMS, f"item-{i}", item_event(i))
    producer.flush()
    second = processor(stack, topic_prefix, echo_to_predictions(seen))
    drain(second, lambda: len(seen) >= 80)
    second.close()

    assert 20 <= stopped_at < 80
    assert sorted(seen) == sorted(f"item-{i}" for i in range(80)), (
        "lost or duplicated items across the restart"
    )
    predictions = read_all(stack, topic_prefix, PREDICTIONS)
    assert sorted(p.ingested.item.item_id for p in predictions) == sorted(seen)
    assert predictions[0].ingested.item.content.text.startswith("text ")


def test_an_undecodable_message_goes_to_the_dead_letter_topic_and_the_stream_goes_on(
    stack, topic_prefix
) -> None:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    producer.send(ITEMS, "item-0", item_event(0))
    corrupt = b"\xff\xff\xff\x07not a protobuf"
    producer.send(ITEMS, "item-bad", corrupt)
    producer.send(ITEMS, "item-1", item_event(1))
    producer.flush()

    seen: list[str] = []
    proc = processor(stack, topic_prefix, echo_to_predictions(seen))
    # the three records are on different partitions, so they may come in different batches:
    # wait until all three are done (processed counts dead-lettered records too)
    drain(proc, lambda: proc.processed >= 3)
    proc.close()

    assert sorted(seen) == ["item-0", "item-1"]
    letters = read_all(stack, topic_prefix, DEAD_LETTERS)
    assert len(letters) == 1
    letter = letters[0]
    assert letter.value == corrupt, "the original bytes are kept"
    assert letter.key == b"item-bad"
    assert letter.error_type == "DecodeError"
    assert "ItemIngested" in letter.reason
    assert letter.source_topic == ITEMS.name(topic_prefix)


def test_a_handler_failure_dead_letters_only_the_failing_event(stack, topic_prefix) -> None:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    for i in range(5):
        producer.send(ITEMS, f"item-{i}", item_event(i))
    producer.flush()
    seen: list[str] = []

    def handler(batch: stream.Batch) -> None:
        for event in batch.events:
            if event.message.item.item_id == "item-2":
                raise PoisonMessage("Rejected", "item-2 is unprocessable")
        echo_to_predictions(seen)(batch)

    proc = processor(stack, topic_prefix, handler)
    drain(proc, lambda: proc.processed >= 5)
    proc.close()
    assert sorted(seen) == ["item-0", "item-1", "item-3", "item-4"]
    letters = read_all(stack, topic_prefix, DEAD_LETTERS)
    assert [(d.key, d.error_type) for d in letters] == [(b"item-2", "Rejected")]


def test_an_output_over_the_message_size_dead_letters_its_input_and_the_stream_goes_on(
    stack, topic_prefix
) -> None:
    # Before: the broker refused the record at every flush and the batch was re-read forever.
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    for i in range(4):
        producer.send(ITEMS, f"item-{i}", item_event(i))
    huge = b"\xff" * (MAX_MESSAGE_BYTES + 30_000)  # fits the topic, but not with a dead letter's envelope
    producer.send(ITEMS, "item-huge", huge)
    producer.flush()
    seen: list[str] = []

    def handler(batch: stream.Batch) -> None:
        for event in batch.events:
            seen.append(event.message.item.item_id)
            out = events_pb2.Prediction(ingested=event.message)
            if event.message.item.item_id == "item-1":
                out.ingested.item.content.text = "x" * (MAX_MESSAGE_BYTES + 1)
            batch.emit(PREDICTIONS, event.message.item.item_id, out)

    proc = processor(stack, topic_prefix, handler)
    drain(proc, lambda: proc.processed >= 5)
    proc.close()
    predictions = read_all(stack, topic_prefix, PREDICTIONS)
    assert sorted(p.ingested.item.item_id for p in predictions) == ["item-0", "item-2", "item-3"]
    letters = {d.key: d for d in read_all(stack, topic_prefix, DEAD_LETTERS)}
    assert set(letters) == {b"item-1", b"item-huge"}
    assert letters[b"item-1"].error_type == "MessageTooLarge"
    assert letters[b"item-huge"].error_type == "DecodeError" and "truncated" in letters[b"item-huge"].reason
    assert (
        huge.startswith(letters[b"item-huge"].value) and len(letters[b"item-huge"].value) < MAX_MESSAGE_BYTES
    )


def test_a_dependency_outage_pauses_without_committing(stack, topic_prefix) -> None:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    for i in range(10):
        producer.send(ITEMS, f"item-{i}", item_event(i))
    producer.flush()
    down = {"count": 3}
    seen: list[str] = []

    def handler(batch: stream.Batch) -> None:
        if down["count"] > 0:
            down["count"] -= 1
            raise DependencyUnavailable("triton", "simulated outage")
        echo_to_predictions(seen)(batch)

    proc = processor(stack, topic_prefix, handler, max_backoff_s=0.2)
    drain(proc, lambda: len(seen) >= 10)
    proc.close()
    assert down["count"] == 0
    assert sorted(seen) == sorted(f"item-{i}" for i in range(10)), "items were skipped during the outage"
    assert read_all(stack, topic_prefix, DEAD_LETTERS) == []


def test_a_failed_send_is_reported_by_the_flush_of_the_thread_that_sent_it(stack, topic_prefix) -> None:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix, [ITEMS])
    missing = Topic("missing", events_pb2.ItemIngested, 1)  # never created (no auto-creation)
    producer = stream.EventProducer(
        stack.bootstrap_servers, topic_prefix, "test", **{"topic.metadata.propagation.max.ms": 1000}
    )
    outcome: dict[str, object] = {}

    def other_thread() -> None:
        producer.send(ITEMS, "item-ok", item_event(1))
        try:
            producer.flush()
            outcome["other"] = "flushed"
        except DependencyUnavailable as exc:
            outcome["other"] = exc

    producer.send(missing, "item-lost", item_event(0))
    thread = threading.Thread(target=other_thread)
    thread.start()
    with pytest.raises(DependencyUnavailable, match="Unknown topic"):
        producer.flush()
    thread.join(60)
    assert outcome["other"] == "flushed", "a failure is reported to the thread whose send failed only"
    producer.send(ITEMS, "item-next", item_event(2))
    producer.flush()  # the failure was reported once; the next flush starts clean
    producer.close()
    assert sorted(e.item.item_id for e in read_all(stack, topic_prefix, ITEMS)) == ["item-1", "item-2"]


def test_after_a_rebalance_a_member_commits_only_the_partitions_it_owns(stack, topic_prefix) -> None:
    # Before: close() committed every partition the member had ever held, rewinding the progress
    # of the member that took them over (its records were delivered again).
    from labelloop.core import kafka_clients

    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")

    def produce(start: int, n: int) -> None:
        for i in range(start, start + n):
            producer.send(ITEMS, f"item-{i}", item_event(i))
        producer.flush()

    produce(0, 60)
    first = processor(stack, topic_prefix, lambda batch: None)
    drain(first, lambda: first.processed >= 60)
    assert len(first._committed) == ITEMS.partitions, "the first member held every partition"

    second = processor(stack, topic_prefix, lambda batch: None)

    def owned(member: stream.StreamProcessor) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in member.consumer.assignment()}

    drain(
        first,
        lambda: (second.run_once(), bool(owned(second)) and owned(first).isdisjoint(owned(second)))[1],
        timeout=90,
    )
    produce(60, 60)
    drain(first, lambda: (second.run_once(), first.processed + second.processed >= 120)[1])
    moved = owned(second)
    wait_until(lambda: (second.run_once() or True) and all(w in second._committed for w in moved), 30)
    first.close()  # must not commit the partitions that moved

    group = f"{topic_prefix}.g"
    probe = kafka_clients.consumer(stack.bootstrap_servers, group, "probe")
    try:
        name = ITEMS.name(topic_prefix)
        committed = probe.committed([kafka_clients.TopicPartition(t, p) for t, p in moved], timeout=10)
        ends = {tp.partition: probe.get_watermark_offsets(tp, timeout=10)[1] for tp in committed}
        assert {tp.partition: tp.offset for tp in committed} == {p: ends[p] for t, p in moved if t == name}
    finally:
        probe.close()
        second.close()
