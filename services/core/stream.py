"""Kafka plumbing shared by every service: topic creation, an event producer, and the
consume -> handle -> produce -> flush -> commit loop with dead-lettering and graceful shutdown.

Guarantees (ARCHITECTURE.md, "Delivery guarantees"):
- offsets are committed only after everything a batch produced is flushed (at-least-once);
- a record that does not decode, or that a handler rejects as poison, goes to the dead-letter
  topic with its reason and original bytes, and the loop goes on with the next one;
- a dependency that is down (`DependencyUnavailable`) pauses the loop with backoff: the batch is
  re-read from its first offset and nothing past it is committed;
- SIGTERM/SIGINT stop the loop after the batch in hand: produce, flush, commit, close;
- offsets are committed only for partitions this member owns: a revoked partition's progress is
  committed at the revoke, and never again by this member (no rewinding its next owner);
- with a transactional producer (every service's consume loop, `Runtime.processor`) a batch's
  outputs, dead letters and offsets are committed in one Kafka transaction: a crash between the
  produce and the commit leaves an aborted attempt that read_committed readers never see, and the
  redelivered batch is published once (exactly-once for consume -> produce). The after-flush
  steps (the final-label fence's confirm) run after the commit.

The clients are confluent-kafka's (librdkafka), built and tuned in `kafka_clients`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from labelloop.core import kafka_clients, metrics
from labelloop.core.errors import DependencyUnavailable, LabelloopError, PoisonMessage
from labelloop.core.topics import ALL_TOPICS, DEAD_LETTERS, MAX_MESSAGE_BYTES, Topic
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
    """Create the topics under `prefix` that do not exist yet (idempotent, safe to race) and wait
    until every partition has a leader (see kafka_clients.ensure_topics)."""
    kafka_clients.ensure_topics(bootstrap, prefix, topics, timeout_s)


class _Deliveries:
    """One thread's sends since its last flush: how many are unacknowledged, which failed."""

    __slots__ = ("failures", "lock", "outstanding")

    def __init__(self) -> None:
        self.outstanding = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def delivered(self, error: Any, _message: Any) -> None:
        """librdkafka's delivery report (served by poll/flush, on whichever thread calls them)."""
        with self.lock:
            self.outstanding -= 1
            if error is not None:
                self.failures.append(str(error))


TRANSACTION_CALL_TIMEOUT_S = 10.0
"""How long a commit or abort may take. On loopback or a LAN they take milliseconds; after a
broker restart one can hang (librdkafka issue 5511) and every consume loop waits this long plus
STUCK_GRACE_S before it re-reads its batch with a new producer: the stall operators see."""
STUCK_GRACE_S = 5.0
"""How long past its own timeout a transaction call may block before its producer is replaced."""


class EventProducer:
    """Produces protobuf events to prefixed topics. `send` batches; `flush` makes them durable.

    Idempotent with acks=all (kafka_clients.PRODUCER_DEFAULTS). Thread-safe: each thread's
    `flush` waits for the producer's queue and reports on that thread's own sends. Callers flush
    before committing the offsets of the input that caused the output.

    With a `transactional_id` (a consume loop's producer, used by one thread) sends go between
    :meth:`begin` and :meth:`commit`, which commits them atomically with the consumed offsets;
    :meth:`abort` makes them invisible to read_committed readers.
    """

    def __init__(
        self, bootstrap: str, prefix: str, service: str, *, transactional_id: str | None = None, **config: Any
    ) -> None:
        self.prefix = prefix
        self.service = service
        self.transactional_id = transactional_id
        self._bootstrap, self._config = bootstrap, config
        self._replace = False  # a transaction call hung: start the next with a new producer
        if transactional_id is None:
            self._producer = kafka_clients.producer(bootstrap, f"labelloop-{service}", **config)
        else:
            self._producer = kafka_clients.transactional_producer(
                bootstrap, f"labelloop-{service}", transactional_id, **config
            )
        self._local = threading.local()  # each thread flushes (and checks) its own sends
        self._closed = False
        self._routes: dict[str, tuple[str, Any]] = {}  # topic base -> (full name, produced counter)

    @staticmethod
    def encode(topic: Topic, message: Message | bytes) -> bytes:
        """The record value of `message` (bytes pass as they are); TypeError if `message` is not
        the topic's message type."""
        if not isinstance(message, Message):
            return message
        if not isinstance(message, topic.message_type):
            raise TypeError(
                f"{topic.base} carries {topic.message_type.__name__}, not {type(message).__name__}"
            )
        return message.SerializeToString()

    def send(self, topic: Topic, key: str | bytes, message: Message | bytes) -> None:
        """Queue one event; raises TypeError if `message` is not the topic's message type."""
        value = self.encode(topic, message)
        route = self._routes.get(topic.base)
        if route is None:
            route = (topic.name(self.prefix), metrics.MESSAGES_PRODUCED.labels(self.service, topic.base))
            self._routes[topic.base] = route
        deliveries = self._deliveries()
        with deliveries.lock:
            deliveries.outstanding += 1
        try:
            while True:
                try:
                    self._producer.produce(route[0], value, key, on_delivery=deliveries.delivered)
                    break
                except BufferError:  # the local queue is full: serve delivery reports, then retry
                    self._producer.poll(0.05)
        except BaseException:  # not queued (e.g. a record over message.max.bytes): not outstanding
            with deliveries.lock:
                deliveries.outstanding -= 1
            raise
        route[1].inc()

    def _deliveries(self) -> _Deliveries:
        deliveries: _Deliveries | None = getattr(self._local, "deliveries", None)
        if deliveries is None:
            deliveries = self._local.deliveries = _Deliveries()
        return deliveries

    def flush(self, timeout_s: float = 30) -> None:
        """Block until every event this thread queued is acknowledged; DependencyUnavailable if
        any failed or is still unacknowledged after `timeout_s`."""
        deliveries = self._deliveries()
        self._local.deliveries = _Deliveries()
        if deliveries.outstanding == 0 and not deliveries.failures:
            return
        self._producer.flush(timeout_s)
        with deliveries.lock:
            failures, outstanding = list(deliveries.failures), deliveries.outstanding
        if failures:
            raise DependencyUnavailable("kafka", f"produce failed: {failures[0]} ({len(failures)} failed)")
        if outstanding > 0:
            raise DependencyUnavailable("kafka", f"{outstanding} events not acknowledged in {timeout_s}s")

    @property
    def transactional(self) -> bool:
        return self.transactional_id is not None

    def begin(self) -> None:
        """Start a transaction (transactional producers only)."""
        if self._replace:
            self._replace_producer()
        try:
            self._producer.begin_transaction()
        except kafka_clients.KafkaException as exc:
            self._raise_transaction_error("begin", exc)

    def _replace_producer(self) -> None:
        """A new producer with the same transactional.id: initializing it fences the one whose
        call hung and aborts that one's open transaction. DependencyUnavailable (and another try
        at the next `begin`) while the brokers do not answer."""
        assert self.transactional_id is not None
        self._replace = True
        self._producer = kafka_clients.transactional_producer(
            self._bootstrap, f"labelloop-{self.service}", self.transactional_id, **self._config
        )
        self._replace = False
        log.warning("%s: a new transactional producer took over %s", self.service, self.transactional_id)

    def _bounded(self, step: str, call: Callable[[], None], timeout_s: float) -> None:
        """Run a transaction call that librdkafka bounds by `timeout_s` but that can hang past
        it (seen here: send_offsets_to_transaction after the broker restarted, waiting for a
        coordinator that was never looked up again; librdkafka issues 3779 and 5511). If it has
        not returned STUCK_GRACE_S later, it is left behind and the next transaction starts with
        a new producer (`_replace_producer`); DependencyUnavailable, so the batch is re-read."""
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                call()
                outcome.append(None)
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)

        worker = threading.Thread(target=run, name=f"{self.service}-{step}", daemon=True)
        worker.start()
        worker.join(timeout_s + STUCK_GRACE_S)
        if not outcome:
            self._replace = True
            try:
                self._replace_producer()
            except DependencyUnavailable as exc:
                log.warning("%s: replacing the hung producer: %s; retrying", self.service, exc)
            raise DependencyUnavailable(
                "kafka", f"{step} hung past its {timeout_s:.0f}s timeout; the batch is re-read"
            )
        if outcome[0] is not None:
            raise outcome[0]

    def commit(
        self, offsets: list[Any], group_metadata: Any, timeout_s: float = TRANSACTION_CALL_TIMEOUT_S
    ) -> None:
        """Commit the open transaction: every send since :meth:`begin` and the consumer group's
        `offsets` (the next offsets to read), atomically. Retries what librdkafka calls
        retriable; aborts the transaction and raises DependencyUnavailable when it must be
        aborted (e.g. a rebalance fenced this member's generation); replaces the producer
        before the next transaction when this one is unusable (fatal error, or a call that hung)."""
        deliveries = self._deliveries()
        self._local.deliveries = _Deliveries()
        deadline = time.monotonic() + timeout_s
        client = self._producer
        step = ["send_offsets_to_transaction"]

        def commit() -> None:
            if offsets:
                self._with_retries(
                    lambda: client.send_offsets_to_transaction(
                        offsets, group_metadata, max(1.0, deadline - time.monotonic())
                    ),
                    deadline,
                )
            step[0] = "commit_transaction"
            self._with_retries(
                lambda: client.commit_transaction(max(1.0, deadline - time.monotonic())), deadline
            )

        try:
            self._bounded("commit", commit, timeout_s)
        except kafka_clients.KafkaException as exc:
            self._raise_transaction_error(step[0], exc)
        if deliveries.failures:  # commit_transaction fails first; kept as a guard
            raise DependencyUnavailable("kafka", f"produce failed: {deliveries.failures[0]}")

    def abort(self, timeout_s: float = TRANSACTION_CALL_TIMEOUT_S) -> None:
        """Abort the open transaction (if any): its records stay in the log, marked aborted, and
        read_committed readers skip them."""
        self._local.deliveries = _Deliveries()
        client = self._producer
        try:
            self._bounded("abort", lambda: client.abort_transaction(timeout_s), timeout_s)
        except kafka_clients.KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if (
                isinstance(error, kafka_clients.KafkaError)
                and error.code() == kafka_clients.KafkaError._STATE
            ):
                return  # no transaction in progress
            self._raise_transaction_error("abort_transaction", exc)

    @staticmethod
    def _with_retries(call: Callable[[], None], deadline: float) -> None:
        while True:
            try:
                call()
                return
            except kafka_clients.KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not (isinstance(error, kafka_clients.KafkaError) and error.retriable()):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _raise_transaction_error(self, step: str, exc: kafka_clients.KafkaException) -> None:
        """DependencyUnavailable (the batch is re-read) after what librdkafka's error asks for:
        an abort, or (fatal: fenced, e.g. after the coordinator timed the transaction out) a
        new producer for the next transaction."""
        error = exc.args[0] if exc.args else None
        if isinstance(error, kafka_clients.KafkaError) and error.fatal():
            self._replace = True
            log.error(
                "%s: %s failed: %s; a new producer takes over %s (if this repeats, two live processes "
                "share LABELLOOP_INSTANCE_ID)",
                self.service,
                step,
                exc,
                self.transactional_id,
            )
            raise DependencyUnavailable("kafka", f"{step}: {exc} (producer replaced)") from exc
        if isinstance(error, kafka_clients.KafkaError) and error.txn_requires_abort():
            client = self._producer
            try:
                self._bounded("abort", lambda: client.abort_transaction(30), 30)
            except kafka_clients.KafkaException as abort_error:
                self._replace = True
                raise DependencyUnavailable(
                    "kafka", f"{step}: {exc}; abort_transaction: {abort_error} (producer replaced)"
                ) from exc
            raise DependencyUnavailable("kafka", f"{step}: {exc} (transaction aborted)") from exc
        raise DependencyUnavailable("kafka", f"{step}: {exc}") from exc

    def close(self) -> None:
        """Flush what is queued (the client itself is released with this object); idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._producer.flush(5)  # other threads' sends, if any


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
    outputs: list[tuple[Topic, str | bytes, Message | bytes]] = field(default_factory=list)
    poisoned: list[tuple[Event, PoisonMessage]] = field(default_factory=list)
    flushed: list[Callable[[], None]] = field(default_factory=list)
    #: Keys a handler has claimed for this batch's output, e.g. the items whose final label it
    #: emits (core/final_labels.py), so that a second event of the same item in the same
    #: transaction publishes nothing. Kept across the one-at-a-time retry of a failed batch
    #: (each event's claims join only when its output does).
    claims: set[Any] = field(default_factory=set)

    def emit(self, topic: Topic, key: str | bytes, message: Message | bytes) -> None:
        """Produce `message` (or bytes that already are a serialized `topic.message_type`) to
        `topic` once the batch is done (before its offsets are committed)."""
        self.outputs.append((topic, key, message))

    def dead_letter(self, event: Event, error: PoisonMessage) -> None:
        """Send `event` to the dead-letter topic instead of processing it."""
        self.poisoned.append((event, error))

    def after_flush(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the batch's output is flushed, before its offsets are committed
        (with a transactional producer: once both are committed), e.g. to record that a final
        label is published. Not run when the batch is retried or
        paused; an error in it is logged, and the batch is committed all the same."""
        self.flushed.append(callback)


Handler = Callable[[Batch], None]


def _oversized(outputs: list[tuple[Topic, str | bytes, Message | bytes]]) -> str | None:
    """Serialize `outputs` in place (they are produced as bytes) and say which one, if any, is
    over MAX_MESSAGE_BYTES: producing it would fail on every retry and stall the partition."""
    for index, (topic, key, message) in enumerate(outputs):
        value = EventProducer.encode(topic, message)
        outputs[index] = (topic, key, value)
        if len(value) > MAX_MESSAGE_BYTES:
            return (
                f"an output to {topic.base} is {len(value)} bytes, over the {MAX_MESSAGE_BYTES} of a message"
            )
    return None


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
        self._committed: dict[tuple[str, int], int] = {}  # last offsets committed (async), owned only
        self._owned: set[tuple[str, int]] = set()  # the partitions assigned to this member now
        self.consumer = kafka_clients.consumer(
            bootstrap,
            group_id,
            f"labelloop-{service}",
            on_commit=self._on_commit,
            **(consumer_config or {}),
        )
        try:
            self._await_partition_metadata(timeout_s=60)
            self.consumer.subscribe(
                list(self.inputs), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except kafka_clients.KafkaException as exc:
            self.consumer.close()
            raise DependencyUnavailable("kafka", str(exc)) from exc
        except DependencyUnavailable:
            self.consumer.close()
            raise

    def _await_partition_metadata(self, timeout_s: float) -> None:
        """Subscribe only once the broker reports every input topic's partitions: a group that
        joins while a just-created topic has no metadata yet gets no partitions of it."""
        deadline = time.monotonic() + timeout_s
        for name in self.inputs:
            while not self._has_partitions(name):
                if time.monotonic() > deadline:
                    raise DependencyUnavailable(
                        "kafka", f"no partition metadata for {name} after {timeout_s}s"
                    )
                self.stop.wait(0.1)

    def _has_partitions(self, name: str) -> bool:
        try:
            meta = self.consumer.list_topics(name, timeout=5).topics.get(name)
        except kafka_clients.KafkaException as exc:
            log.debug("%s: metadata for %s: %s", self.service, name, exc)
            return False
        return meta is not None and meta.error is None and bool(meta.partitions)

    # -- rebalances (served by librdkafka inside consume calls, on this thread) -------------
    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self._owned.update((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Hand over cleanly: commit what this member processed of the revoked partitions
        (synchronously, so the next owner starts right after it), then forget them; a batch still
        in hand commits nothing for them (see `_commit`)."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        done = [
            kafka_clients.TopicPartition(t, p, o)
            for (t, p), o in self._committed.items()
            if (t, p) in revoked
        ]
        if done:
            try:
                consumer.commit(offsets=done, asynchronous=False)
            except kafka_clients.KafkaException as exc:
                log.warning(
                    "%s: commit on revoke failed (%s); the next owner may redo a batch", self.service, exc
                )
        self._forget(revoked)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        """Partitions lost without a clean revoke (session timed out): they may be someone
        else's already, so nothing is committed for them."""
        self._forget({(tp.topic, tp.partition) for tp in partitions})

    def _forget(self, partitions: set[tuple[str, int]]) -> None:
        self._owned -= partitions
        for where in partitions:
            self._committed.pop(where, None)

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
        records = self._poll()
        self._update_lag()
        if not records:
            if self.on_idle is not None:
                self.on_idle()
            return 0
        transactional = self.producer.transactional
        if transactional:  # a partition revoked during the poll is its next owner's to process
            records = [r for r in records if (r.topic(), r.partition()) in self._owned]
            if not records:
                return 0
        started = time.perf_counter()
        first_offsets: dict[tuple[str, int], int] = {}
        last_offsets: dict[tuple[str, int], int] = {}
        for record in records:
            where = (record.topic(), record.partition())
            first_offsets.setdefault(where, record.offset())
            last_offsets[where] = record.offset()
        batch = self._decode(records)
        try:
            self._handle(batch)
            if transactional:
                self._produce_in_transaction(batch, last_offsets)
            else:
                self._produce(batch)
                self.producer.flush()
        except DependencyUnavailable as exc:
            self._pause(first_offsets, exc)
            return 0
        for callback in batch.flushed:
            try:
                callback()
            except Exception:  # the output is durable: at worst a redelivery publishes it again
                log.exception("%s: an after-flush step failed", self.service)
        if not transactional:
            self._commit(last_offsets)
        self._backoff = 0.0
        metrics.BATCH_SIZE.labels(self.service).observe(len(records))
        metrics.BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        self.processed += len(records)
        return len(records)

    def _poll(self) -> list[Any]:
        """The records at hand (or the first to arrive within `poll_timeout_ms`), then
        (micro-batching) more until `max_poll_records` records or `batch_max_wait_ms` since."""
        records = kafka_clients.consume_available(
            self.consumer, self.max_poll_records, self.poll_timeout_ms / 1000
        )
        if not records or self.batch_max_wait_ms <= 0:
            return records
        deadline = time.monotonic() + self.batch_max_wait_ms / 1000
        while len(records) < self.max_poll_records and not self.stop.is_set():
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            # returns when the batch is full or the deadline passes
            more = self.consumer.consume(self.max_poll_records - len(records), left_s)
            records.extend(kafka_clients.records_only(more))
        return records

    def close(self) -> None:
        """Flush pending output, make the last commit synchronous, leave the group and close."""
        try:
            self.producer.flush()
        except DependencyUnavailable:
            log.warning("%s: could not flush on close", self.service)
        owned = {(t, p): o for (t, p), o in self._committed.items() if (t, p) in self._owned}
        if owned:  # never another member's partitions (and with transactions, none: committed)
            offsets = [kafka_clients.TopicPartition(t, p, o) for (t, p), o in owned.items()]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except kafka_clients.KafkaException as exc:
                log.warning(
                    "%s: final commit failed (%s); the last batch may be redelivered", self.service, exc
                )
        self.consumer.close()

    # -- steps -----------------------------------------------------------------------------
    def _decode(self, records: list[Any]) -> Batch:
        batch = Batch(events=[])
        consumed: dict[str, int] = {}
        for record in records:
            consumed[record.topic()] = consumed.get(record.topic(), 0) + 1
            topic = self.inputs[record.topic()]
            value = record.value()
            event = Event(
                topic=topic,
                message=None,
                key=record.key(),
                partition=record.partition(),
                offset=record.offset(),
                raw=value or b"",
                timestamp_ms=record.timestamp()[1],
            )
            try:
                if value is None:
                    raise DecodeError("empty value (tombstone)")
                event.message = topic.decode(value)
            except DecodeError as exc:
                batch.dead_letter(
                    event, PoisonMessage("DecodeError", f"not a {topic.message_type.__name__}: {exc}")
                )
                continue
            batch.events.append(event)
        for name, count in consumed.items():
            metrics.MESSAGES_CONSUMED.labels(self.service, self.inputs[name].base).inc(count)
        return batch

    def _handle(self, batch: Batch) -> None:
        if not batch.events:
            return
        undecodable = len(batch.poisoned)  # dead letters of _decode; the handler's come after
        try:
            self.handler(batch)
            oversized = _oversized(batch.outputs)
            if oversized is None:
                return
            log.warning("%s: %s; retrying one event at a time", self.service, oversized)
        except DependencyUnavailable:
            raise
        except Exception:
            log.exception(
                "%s: batch of %d failed; retrying one event at a time", self.service, len(batch.events)
            )
        batch.outputs.clear()
        batch.flushed.clear()
        batch.claims.clear()  # the failed attempt's output is gone, and with it what it claimed
        del batch.poisoned[undecodable:]
        for event in batch.events:
            single = Batch(events=[event], claims=set(batch.claims))
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
            oversized = _oversized(single.outputs)
            if oversized is not None:
                batch.dead_letter(event, PoisonMessage("MessageTooLarge", oversized))
                continue
            batch.outputs.extend(single.outputs)
            batch.poisoned.extend(single.poisoned)
            batch.flushed.extend(single.flushed)
            batch.claims |= single.claims

    def _produce(self, batch: Batch) -> None:
        for topic, key, message in batch.outputs:
            self.producer.send(topic, key, message)
        for event, error in batch.poisoned:
            value, reason = event.raw, error.reason
            room = MAX_MESSAGE_BYTES - len(event.key or b"") - len(reason.encode()) - 4096
            if len(value) > room:  # a dead letter always fits: it keeps the start of the value
                reason = f"{reason} (value truncated from {len(value)} bytes)"
                value = value[: max(0, room)]
            letter = events_pb2.DeadLetter(
                source_topic=event.topic.name(self.prefix),
                source_partition=event.partition,
                source_offset=event.offset,
                key=event.key or b"",
                value=value,
                reason=reason,
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

    def _produce_in_transaction(self, batch: Batch, last_offsets: dict[tuple[str, int], int]) -> None:
        """Produce the batch's outputs and dead letters and commit them in one transaction with
        the offsets past the batch: a crash before the commit leaves an open transaction that
        the restarted process's producer (same transactional.id) aborts, so read_committed
        readers never see the first attempt. Aborts and raises DependencyUnavailable on
        failure (the batch is re-read)."""
        offsets = [kafka_clients.TopicPartition(t, p, o + 1) for (t, p), o in last_offsets.items()]
        self.producer.begin()
        try:
            self._produce(batch)
            self.producer.commit(offsets, self.consumer.consumer_group_metadata())
        except BaseException:
            try:
                self.producer.abort()
            except LabelloopError as exc:  # the first error is the one to report
                log.warning("%s: abort_transaction failed: %s", self.service, exc)
            raise

    def _commit(self, last_offsets: dict[tuple[str, int], int]) -> None:
        """Commit past the batch, asynchronously, for the partitions this member still owns (a
        partition revoked while the batch was polled is its new owner's to commit): the output is
        already flushed, so a commit that is lost (reported by `_on_commit`) means at most a
        redelivery, which is idempotent. `close` makes the last one synchronous."""
        owned = {where: o for where, o in last_offsets.items() if where in self._owned}
        if not owned:
            return
        offsets = [kafka_clients.TopicPartition(t, p, o + 1) for (t, p), o in owned.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except kafka_clients.KafkaException as exc:
            log.warning("%s: commit failed (%s); the batch may be redelivered", self.service, exc)
            return
        for (t, p), o in owned.items():
            self._committed[(t, p)] = o + 1

    def _on_commit(self, error: Any, partitions: list[Any]) -> None:
        failed = [p for p in partitions if p.error is not None]
        if error is not None or failed:
            log.warning(
                "%s: commit failed (%s); those records may be redelivered",
                self.service,
                error or ", ".join(f"{p.topic}[{p.partition}]: {p.error}" for p in failed),
            )

    def _pause(self, first_offsets: dict[tuple[str, int], int], exc: DependencyUnavailable) -> None:
        """Rewind to the batch's first offsets (nothing committed) and back off."""
        for (t, p), offset in first_offsets.items():
            try:
                self.consumer.seek(kafka_clients.TopicPartition(t, p, offset))
            except kafka_clients.KafkaException as seek_error:
                # no longer assigned (a rebalance): its new owner starts at the committed offset
                log.warning("%s: could not rewind %s[%d]: %s", self.service, t, p, seek_error)
        self._backoff = min(self.max_backoff_s, max(0.1, self._backoff * 2))
        metrics.DEPENDENCY_UP.labels(self.service, exc.dependency).set(0)
        log.warning("%s: %s; pausing %.1fs without committing", self.service, exc, self._backoff)
        self.stop.wait(self._backoff)

    def _update_lag(self, every_s: float = 5.0) -> None:
        """Consumer lag per assigned partition, from the high watermarks of the latest fetches
        (no request to the broker)."""
        now = time.monotonic()
        if now - self._last_lag_update < every_s:
            return
        self._last_lag_update = now
        try:
            assigned = self.consumer.assignment()
            if not assigned:
                return
            for tp in self.consumer.position(assigned):
                marks = self.consumer.get_watermark_offsets(tp, cached=True)
                if marks is None or marks[1] < 0 or tp.offset < 0:
                    continue
                metrics.CONSUMER_LAG.labels(self.service, self.inputs[tp.topic].base, str(tp.partition)).set(
                    max(0, marks[1] - tp.offset)
                )
        except kafka_clients.KafkaException as exc:
            log.debug("lag update failed: %s", exc)
