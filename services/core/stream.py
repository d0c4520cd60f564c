"""Kafka plumbing shared by every service: topic creation, an event producer, and the
consume -> handle -> produce -> flush -> commit loop with dead-lettering and graceful shutdown.

Guarantees (ARCHITECTURE.md, "Delivery guarantees"):
- offsets are committed only after everything a batch produced is flushed (at-least-once);
- a record that does not decode, or that a handler rejects as poison, goes to the dead-letter
  topic with its reason and original bytes, and the loop goes on with the next one;
- a dependency that is down (`DependencyUnavailable`) pauses the loop with backoff: the batch is
  re-read from its first offset and nothing past it is committed;
- SIGTERM/SIGINT stop the loop after the batch in hand: produce, flush, commit, close.

This is the one module that touches the Kafka client, so the client library can be swapped.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from labelloop.core import metrics
from labelloop.core.errors import DependencyUnavailable, PoisonMessage
from labelloop.core.topics import ALL_TOPICS, DEAD_LETTERS, Topic
from labelloop.v1 import events_pb2

log = logging.getLogger(__name__)


def now_timestamp() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def ensure_topics(
    bootstrap: str, prefix: str, topics: Iterable[Topic] = ALL_TOPICS, timeout_s: float = 30
) -> None:
    """Create the topics under `prefix` that do not exist yet (idempotent, safe to race)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="labelloop-admin")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(t.name(prefix), t.partitions, 1, topic_configs=dict(t.config))
            for t in topics
            if t.name(prefix) not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        wanted = {t.name(prefix) for t in topics}
        while not _all_partitions_led(admin, wanted):
            if time.monotonic() > deadline:
                raise DependencyUnavailable("kafka", f"topics not ready in {timeout_s}s: {sorted(wanted)}")
            time.sleep(0.1)
    finally:
        admin.close()


def _all_partitions_led(admin: KafkaAdminClient, names: set[str]) -> bool:
    """True when every partition of every topic in `names` exists and has a leader."""
    if not names <= set(admin.list_topics()):
        return False
    for topic in admin.describe_topics(sorted(names)):
        if topic.get("error_code") or not topic.get("partitions"):
            return False
        if any(p.get("leader_id", -1) < 0 or p.get("error_code") for p in topic["partitions"]):
            return False
    return True


class EventProducer:
    """Produces protobuf events to prefixed topics. `send` batches; `flush` makes them durable.

    The producer is idempotent with acks=all (kafka-python 3 defaults). Callers flush before
    committing the offsets of the input that caused the output.
    """

    def __init__(self, bootstrap: str, prefix: str, service: str, **config: Any) -> None:
        self.prefix = prefix
        self.service = service
        defaults: dict[str, Any] = {
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "max_request_size": 4 * 1024 * 1024,
        }
        defaults.update(config)
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap, client_id=f"labelloop-{service}", **defaults
            )
        except KafkaError as exc:
            raise DependencyUnavailable("kafka", str(exc)) from exc
        self._local = threading.local()  # each thread flushes (and checks) its own sends

    def send(self, topic: Topic, key: str | bytes, message: Message | bytes) -> None:
        """Queue one event; raises TypeError if `message` is not the topic's message type."""
        if isinstance(message, Message):
            if not isinstance(message, topic.message_type):
                raise TypeError(
                    f"{topic.base} carries {topic.message_type.__name__}, not {type(message).__name__}"
                )
            value = message.SerializeToString()
        else:
            value = message
        key_bytes = key.encode() if isinstance(key, str) else key
        self._thread_pending().append(
            self._producer.send(topic.name(self.prefix), key=key_bytes, value=value)
        )
        metrics.MESSAGES_PRODUCED.labels(self.service, topic.base).inc()

    def _thread_pending(self) -> list[Any]:
        if not hasattr(self._local, "pending"):
            self._local.pending = []
        pending: list[Any] = self._local.pending
        return pending

    def flush(self, timeout_s: float = 30) -> None:
        """Block until every queued event is acknowledged; DependencyUnavailable if any failed."""
        pending = self._thread_pending()
        self._local.pending = []
        try:
            self._producer.flush(timeout=timeout_s)
            for future in pending:
                future.get(timeout=timeout_s)
        except KafkaError as exc:
            raise DependencyUnavailable("kafka", f"produce failed: {exc}") from exc

    def close(self) -> None:
        """Flush what is queued and close."""
        try:
            self.flush()
        finally:
            self._producer.close(timeout=5)


@dataclass
class Event:
    """One consumed record, decoded."""

    topic: Topic
    message: Any
    key: bytes | None
    partition: int
    offset: int
    raw: bytes
    timestamp_ms: int


@dataclass
class Batch:
    """What a handler receives: the decoded events, and where it puts its output."""

    events: list[Event]
    outputs: list[tuple[Topic, str | bytes, Message]] = field(default_factory=list)
    poisoned: list[tuple[Event, PoisonMessage]] = field(default_factory=list)

    def emit(self, topic: Topic, key: str | bytes, message: Message) -> None:
        """Produce `message` to `topic` once the batch is done (before its offsets are committed)."""
        self.outputs.append((topic, key, message))

    def dead_letter(self, event: Event, error: PoisonMessage) -> None:
        """Send `event` to the dead-letter topic instead of processing it."""
        self.poisoned.append((event, error))


Handler = Callable[[Batch], None]


class StopFlag:
    """Set by SIGTERM/SIGINT (when installed) or `set()`; the loop checks it between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self, *_: Any) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def install_signal_handlers(self) -> None:
        """Route SIGTERM and SIGINT to this flag (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.set)
            signal.signal(signal.SIGINT, self.set)


class StreamProcessor:
    """Consumes `inputs` as consumer group `group_id`, hands each polled batch to `handler`,
    produces its outputs and dead letters, flushes, then commits.

    A handler that raises an unexpected exception has its batch retried one event at a time, so
    only the event that fails again is dead-lettered. A `DependencyUnavailable` pauses the loop
    with exponential backoff (up to `max_backoff_s`) and re-reads the batch.
    """

    def __init__(
        self,
        *,
        service: str,
        bootstrap: str,
        prefix: str,
        inputs: Sequence[Topic],
        group_id: str,
        handler: Handler,
        producer: EventProducer,
        poll_timeout_ms: int = 200,
        max_poll_records: int = 500,
        max_backoff_s: float = 5.0,
        batch_max_wait_ms: int = 0,
        on_idle: Callable[[], None] | None = None,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        self.service = service
        self.prefix = prefix
        self.inputs = {t.name(prefix): t for t in inputs}
        self.handler = handler
        self.producer = producer
        self.poll_timeout_ms = poll_timeout_ms
        self.max_poll_records = max_poll_records
        self.max_backoff_s = max_backoff_s
        self.batch_max_wait_ms = batch_max_wait_ms
        self.on_idle = on_idle
        self.stop = StopFlag()
        self.processed = 0
        self._backoff = 0.0
        self._last_lag_update = 0.0
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": group_id,
            "client_id": f"labelloop-{service}",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_poll_records,
            "fetch_max_wait_ms": 50,
            "max_poll_interval_ms": 600_000,
            "metadata_max_age_ms": 30_000,
            # a crashed member's partitions move to the others after 10 s; shorter sessions got
            # live members evicted (and the group rebalanced) on a loaded 2-core machine
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 2_500,
        }
        config.update(consumer_config or {})
        try:
            self.consumer = KafkaConsumer(**config)
            self._await_partition_metadata(timeout_s=60)
            self.consumer.subscribe(list(self.inputs))
        except KafkaError as exc:
            raise DependencyUnavailable("kafka", str(exc)) from exc

    def _await_partition_metadata(self, timeout_s: float) -> None:
        """Subscribe only once the client knows every input topic's partitions: a group that
        joins while a just-created topic has no metadata yet gets no partitions of it."""
        deadline = time.monotonic() + timeout_s
        for name in self.inputs:
            while not self.consumer.partitions_for_topic(name):
                if time.monotonic() > deadline:
                    raise DependencyUnavailable(
                        "kafka", f"no partition metadata for {name} after {timeout_s}s"
                    )
                self.stop.wait(0.1)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        """Process until the stop flag is set; then finish the batch in hand and close."""
        log.info("%s: consuming %s", self.service, ", ".join(self.inputs))
        try:
            while not self.stop.is_set():
                self.run_once()
        finally:
            self.close()

    def run_once(self) -> int:
        """Poll one batch and process it fully (produce, flush, commit). Returns events handled."""
        polled = self._poll()
        self._update_lag()
        records = [r for part in polled.values() for r in part]
        if not records:
            if self.on_idle is not None:
                self.on_idle()
            return 0
        started = time.perf_counter()
        first_offsets = {tp: part[0].offset for tp, part in polled.items() if part}
        batch = self._decode(records)
        try:
            self._handle(batch)
            self._produce(batch)
            self.producer.flush()
        except DependencyUnavailable as exc:
            self._pause(first_offsets, exc)
            return 0
        self._commit(polled)
        self._backoff = 0.0
        metrics.BATCH_SIZE.labels(self.service).observe(len(records))
        metrics.BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        self.processed += len(records)
        return len(records)

    def _poll(self) -> dict[TopicPartition, list[Any]]:
        """One poll, then (micro-batching) more polls until `max_poll_records` records or
        `batch_max_wait_ms` since the first record."""
        polled: dict[TopicPartition, list[Any]] = dict(
            self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_poll_records)
        )
        if not polled or self.batch_max_wait_ms <= 0:
            return polled
        deadline = time.monotonic() + self.batch_max_wait_ms / 1000
        count = sum(len(part) for part in polled.values())
        while count < self.max_poll_records and not self.stop.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            more = self.consumer.poll(timeout_ms=left_ms, max_records=self.max_poll_records - count)
            for tp, part in more.items():
                polled.setdefault(tp, []).extend(part)
                count += len(part)
        return polled

    def close(self) -> None:
        """Flush pending output and close the consumer (no commit beyond processed work)."""
        try:
            self.producer.flush()
        except DependencyUnavailable:
            log.warning("%s: could not flush on close", self.service)
        self.consumer.close(autocommit=False)

    # -- steps -----------------------------------------------------------------------------
    def _decode(self, records: list[Any]) -> Batch:
        batch = Batch(events=[])
        for record in records:
            topic = self.inputs[record.topic]
            metrics.MESSAGES_CONSUMED.labels(self.service, topic.base).inc()
            event = Event(
                topic=topic,
                message=None,
                key=record.key,
                partition=record.partition,
                offset=record.offset,
                raw=record.value or b"",
                timestamp_ms=record.timestamp,
            )
            try:
                if record.value is None:
                    raise DecodeError("empty value (tombstone)")
                event.message = topic.decode(record.value)
            except DecodeError as exc:
                batch.dead_letter(
                    event, PoisonMessage("DecodeError", f"not a {topic.message_type.__name__}: {exc}")
                )
                continue
            batch.events.append(event)
        return batch

    def _handle(self, batch: Batch) -> None:
        if not batch.events:
            return
        try:
            self.handler(batch)
            return
        except DependencyUnavailable:
            raise
        except Exception:
            log.exception(
                "%s: batch of %d failed; retrying one event at a time", self.service, len(batch.events)
            )
        batch.outputs.clear()
        for event in batch.events:
            single = Batch(events=[event])
            try:
                self.handler(single)
            except DependencyUnavailable:
                raise
            except PoisonMessage as exc:
                batch.dead_letter(event, exc)
                continue
            except Exception as exc:
                batch.dead_letter(event, PoisonMessage(type(exc).__name__, f"handler failed: {exc}"))
                continue
            batch.outputs.extend(single.outputs)
            batch.poisoned.extend(single.poisoned)

    def _produce(self, batch: Batch) -> None:
        for topic, key, message in batch.outputs:
            self.producer.send(topic, key, message)
        for event, error in batch.poisoned:
            letter = events_pb2.DeadLetter(
                source_topic=event.topic.name(self.prefix),
                source_partition=event.partition,
                source_offset=event.offset,
                key=event.key or b"",
                value=event.raw,
                reason=error.reason,
                service=self.service,
                error_type=error.error_type,
                at=now_timestamp(),
            )
            log.warning(
                "%s: dead-lettering %s[%d]@%d: %s",
                self.service,
                event.topic.base,
                event.partition,
                event.offset,
                error.reason,
            )
            self.producer.send(DEAD_LETTERS, event.key or b"", letter)
            metrics.DEAD_LETTERS.labels(self.service, event.topic.base, error.error_type).inc()

    def _commit(self, polled: dict[TopicPartition, list[Any]]) -> None:
        offsets = {tp: OffsetAndMetadata(part[-1].offset + 1, "", -1) for tp, part in polled.items() if part}
        try:
            self.consumer.commit(offsets=offsets)
        except KafkaError as exc:
            # The work is produced; a lost commit means at-most a redelivery, which is idempotent.
            log.warning("%s: commit failed (%s); the batch may be redelivered", self.service, exc)

    def _pause(self, first_offsets: dict[TopicPartition, int], exc: DependencyUnavailable) -> None:
        for tp, offset in first_offsets.items():
            self.consumer.seek(tp, offset)
        self._backoff = min(self.max_backoff_s, max(0.1, self._backoff * 2))
        metrics.DEPENDENCY_UP.labels(self.service, exc.dependency).set(0)
        log.warning("%s: %s; pausing %.1fs without committing", self.service, exc, self._backoff)
        self.stop.wait(self._backoff)

    def _update_lag(self, every_s: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_lag_update < every_s:
            return
        self._last_lag_update = now
        assigned = self.consumer.assignment()
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(list(assigned))
            for tp in assigned:
                lag = max(0, ends.get(tp, 0) - self.consumer.position(tp))
                metrics.CONSUMER_LAG.labels(self.service, self.inputs[tp.topic].base, str(tp.partition)).set(
                    lag
                )
        except KafkaError as exc:
            log.debug("lag update failed: %s", exc)
