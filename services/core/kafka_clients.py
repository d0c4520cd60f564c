"""The one place that builds Kafka clients (confluent-kafka, i.e. librdkafka) and holds their
tuning and security; stream.py, label_log.py, health.py, ingest and the local stack get their
clients here.

Security (every client of the process): `KafkaSecurity` from the `LABELLOOP_KAFKA_*` settings
(security protocol, SASL mechanism PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512, username, password or
password file, CA file), read once from the environment, or set with `configure` (the tests'
stack does). Topics are created with `LABELLOOP_TOPIC_REPLICATION_FACTOR` and
`LABELLOOP_TOPIC_MIN_INSYNC_REPLICAS` (production: 3 and 2).

Config keys are librdkafka property names (`linger.ms`); an override written with underscores
(`session_timeout_ms`) is read as the dotted name, so the kafka-python spellings of the same
properties keep working. An unknown property fails at construction (librdkafka checks them).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from labelloop.core.errors import DependencyUnavailable, LabelloopError
from labelloop.core.topics import ALL_TOPICS, TOPIC_MAX_MESSAGE_BYTES, Topic

log = logging.getLogger(__name__)

__all__ = [
    "OFFSET_BEGINNING",
    "KafkaError",
    "KafkaException",
    "KafkaSecurity",
    "Message",
    "TopicPartition",
    "admin",
    "cluster_broker_ports",
    "configure",
    "consume_available",
    "consumer",
    "ensure_topics",
    "producer",
    "reader",
    "security",
    "transactional_producer",
    "watermarks",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConfigError(LabelloopError):
    """The Kafka security settings are inconsistent; the message names the variable."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How every client of this process authenticates to Kafka (librdkafka properties)."""

    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = ""
    ca_file: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaConfigError(
                f"LABELLOOP_KAFKA_SECURITY_PROTOCOL={self.protocol!r}: use one of {', '.join(PROTOCOLS)}"
            )
        if self.protocol.startswith("SASL"):
            if self.mechanism not in MECHANISMS:
                raise KafkaConfigError(
                    f"LABELLOOP_KAFKA_SASL_MECHANISM={self.mechanism!r}: use one of {', '.join(MECHANISMS)}"
                )
            if not self.username or not self.password:
                raise KafkaConfigError(
                    f"LABELLOOP_KAFKA_USERNAME and LABELLOOP_KAFKA_PASSWORD (or _FILE) are required "
                    f"with {self.protocol}"
                )
        if self.ca_file and not os.path.isfile(self.ca_file):
            raise KafkaConfigError(f"LABELLOOP_KAFKA_CA_FILE={self.ca_file!r}: no such file")

    def properties(self) -> dict[str, Any]:
        """The librdkafka properties for this security setup."""
        props: dict[str, Any] = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            props.update(
                {
                    "sasl.mechanism": self.mechanism,
                    "sasl.username": self.username,
                    "sasl.password": self.password,
                }
            )
        if self.ca_file:
            props["ssl.ca.location"] = self.ca_file
        return props

    def describe(self) -> str:
        """For messages: the protocol and user, never the password."""
        if self.protocol.startswith("SASL"):
            return f"{self.protocol} {self.mechanism} as {self.username!r}"
        return self.protocol


_security: KafkaSecurity | None = None
_security_lock = threading.Lock()


def configure(value: KafkaSecurity | None) -> None:
    """Set the security of every client this process builds from now on (None: read the
    environment again on next use)."""
    global _security
    with _security_lock:
        _security = value


def security() -> KafkaSecurity:
    """The configured security, or the one the `LABELLOOP_KAFKA_*` settings describe."""
    global _security
    with _security_lock:
        if _security is None:
            from labelloop.core.settings import CommonSettings, load

            _security = load(CommonSettings).kafka_security()
        return _security


# Shared by every client: loopback or LAN, small messages; latency matters more than packets.
_COMMON: dict[str, Any] = {
    "socket.nagle.disable": True,
    "topic.metadata.refresh.interval.ms": 30_000,
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    # idempotent, acks=all: a retried send never duplicates or reorders within a partition
    "enable.idempotence": True,
    # every service flushes at the end of a batch (flush sends at once, ignoring linger), so
    # linger only groups sends between flushes
    "linger.ms": 5,
    "batch.size": 1024 * 1024,
    "message.max.bytes": 2 * TOPIC_MAX_MESSAGE_BYTES,  # a produce request; records are checked before
    # a flush that has not landed in 30 s is reported (DependencyUnavailable) by EventProducer
    "delivery.timeout.ms": 60_000,
}

# A transaction left open by a crashed process blocks read_committed readers of its output
# partitions (they stop at the last stable offset) until the broker aborts it: at once when the
# restarted process calls init_transactions with the same transactional.id, else after this.
TRANSACTION_TIMEOUT_MS = 30_000

CONSUMER_DEFAULTS: dict[str, Any] = {
    # only committed transactions (and non-transactional records) are delivered: the records of
    # an aborted or still open transaction (a crashed consume loop's batch) are never seen
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    # the broker answers a fetch as soon as one byte is there, else after 100 ms
    "fetch.min.bytes": 1,
    "fetch.wait.max.ms": 100,
    # prefetch up to 16 MB per partition (librdkafka's default is 64 MB)
    "queued.max.messages.kbytes": 16 * 1024,
    "max.poll.interval.ms": 600_000,
    # a crashed member's partitions move to the others after 10 s; shorter sessions got live
    # members evicted (and the group rebalanced) on a loaded 2-core machine
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 2_500,
}


# confluent-kafka's own (Python) settings, spelled with underscores on purpose
_PYTHON_SETTINGS = frozenset(
    {"error_cb", "stats_cb", "throttle_cb", "oauth_cb", "on_commit", "on_delivery", "logger"}
)


def _properties(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key if key in _PYTHON_SETTINGS else key.replace("_", "."): value for key, value in overrides.items()
    }


def _error_logger(client_id: str) -> Any:
    def on_error(error: KafkaError) -> None:
        log.warning("%s: kafka: %s", client_id, error)

    return on_error


def producer(bootstrap: str, client_id: str, **overrides: Any) -> Producer:
    """An idempotent producer (PRODUCER_DEFAULTS, then `overrides`)."""
    config = {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "error_cb": _error_logger(client_id),
        **_COMMON,
        **security().properties(),
        **PRODUCER_DEFAULTS,
        **_properties(overrides),
    }
    try:
        return Producer(config)
    except KafkaException as exc:
        raise DependencyUnavailable("kafka", str(exc)) from exc


def transactional_producer(
    bootstrap: str, client_id: str, transactional_id: str, timeout_s: float = 30, **overrides: Any
) -> Producer:
    """A transactional producer (PRODUCER_DEFAULTS plus `transactional.id`), its transactions
    initialized: a previous producer with the same `transactional_id` (this process before a
    crash) is fenced and its open transaction aborted. DependencyUnavailable when the brokers do
    not answer within `timeout_s`."""
    client = producer(
        bootstrap,
        client_id,
        **{
            "transactional.id": transactional_id,
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "delivery.timeout.ms": TRANSACTION_TIMEOUT_MS,  # librdkafka: at most the transaction's
            # after a commit the broker writes its markers; adding the same partitions to the next
            # transaction meanwhile is refused (CONCURRENT_TRANSACTIONS) and retried after this
            # backoff (librdkafka's default, 100 ms, was most of a batch's latency)
            "retry.backoff.ms": 10,
        },
        **overrides,
    )
    try:
        client.init_transactions(timeout_s)
    except KafkaException as exc:
        raise DependencyUnavailable("kafka", f"init_transactions({transactional_id}): {exc}") from exc
    return client


def consumer(bootstrap: str, group_id: str, client_id: str, **overrides: Any) -> Consumer:
    """A group consumer that never commits by itself (CONSUMER_DEFAULTS, then `overrides`)."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": client_id,
        "error_cb": _error_logger(client_id),
        **_COMMON,
        **security().properties(),
        **CONSUMER_DEFAULTS,
        **_properties(overrides),
    }
    try:
        return Consumer(config)
    except KafkaException as exc:
        raise DependencyUnavailable("kafka", str(exc)) from exc


def reader(bootstrap: str, client_id: str, **overrides: Any) -> Consumer:
    """A consumer for `assign()` only: it joins no group and commits nothing (librdkafka wants a
    group id all the same, so it gets a unique one that is never used). read_committed unless
    `overrides` say otherwise (``isolation_level="read_uncommitted"`` shows aborted records too)."""
    return consumer(bootstrap, f"{client_id}-{uuid.uuid4().hex}", client_id, **overrides)


def admin(
    bootstrap: str, client_id: str = "labelloop-admin", auth: KafkaSecurity | None = None, **overrides: Any
) -> AdminClient:
    """An admin client (topics, cluster description, group offsets); `auth` replaces the
    process's security (the local stack probes its own broker with its own credentials)."""
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            **_COMMON,
            **(auth or security()).properties(),
            **_properties(overrides),
        }
    )


class BadCredentials(LabelloopError):
    """The brokers refused this process's SASL credentials; the message names the settings."""


def check_credentials(bootstrap: str, timeout_s: float = 10.0) -> None:
    """Raise BadCredentials when the brokers at `bootstrap` refuse this process's credentials.
    Brokers that are down or slow are not an error here (services pause with backoff)."""
    refusals: list[str] = []

    def on_error(error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            refusals.append(error.str())

    client = admin(bootstrap, "labelloop-credentials", error_cb=on_error)
    try:
        cluster_broker_ports(client, timeout_s)
        return
    except KafkaException:
        client.poll(0.5)  # serve the error callbacks
    if refusals:
        raise BadCredentials(
            f"LABELLOOP_KAFKA_USERNAME / LABELLOOP_KAFKA_PASSWORD: Kafka at {bootstrap} refused "
            f"{security().describe()}: {refusals[0]}"
        )


FETCH_GRACE_S = 0.002


def consume_available(client: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Up to `max_messages` records: those already fetched, or else the first to arrive within
    `timeout_s` plus whatever came with it (within FETCH_GRACE_S). (librdkafka's `consume(n, timeout)` alone waits for
    all `n` or the whole timeout.) Error events are logged and left out."""
    messages = client.consume(max_messages, 0)
    if not messages:
        messages = client.consume(1, timeout_s)
        if messages and max_messages > 1:
            # the rest of that fetch response (the other partitions') is queued just after the
            # first record: a short grace keeps one response in one batch
            messages.extend(client.consume(max_messages - 1, FETCH_GRACE_S))
    return records_only(messages)


def records_only(messages: list[Message]) -> list[Message]:
    """`messages` without error events (a partition EOF, an unknown partition), which are logged."""
    if all(m.error() is None for m in messages):
        return messages
    kept = []
    for message in messages:
        error = message.error()
        if error is None:
            kept.append(message)
        elif error.code() != KafkaError._PARTITION_EOF:
            log.warning("kafka: %s [%s]: %s", message.topic(), message.partition(), error)
    return kept


def ensure_topics(
    bootstrap: str,
    prefix: str,
    topics: Iterable[Topic] = ALL_TOPICS,
    timeout_s: float = 30,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
) -> None:
    """Create the topics under `prefix` that do not exist yet (idempotent, safe to race) with
    `replication_factor` replicas and `min.insync.replicas`, and return once every partition of
    each has a leader; DependencyUnavailable otherwise (existing topics are left as they are)."""
    topics = list(topics)
    wanted = {t.name(prefix) for t in topics}
    client = admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        existing = set(client.list_topics(timeout=timeout_s).topics)
        new = [
            NewTopic(
                t.name(prefix),
                t.partitions,
                replication_factor,
                config={
                    "min.insync.replicas": str(min_insync_replicas),
                    "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES),
                    **{k: str(v) for k, v in t.config.items()},
                },
            )
            for t in topics
            if t.name(prefix) not in existing
        ]
        if new:
            for name, future in client.create_topics(new, operation_timeout=timeout_s).items():
                try:
                    future.result()
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise DependencyUnavailable("kafka", f"creating {name}: {exc}") from exc
        while not _all_partitions_led(client, wanted):
            if time.monotonic() > deadline:
                raise DependencyUnavailable("kafka", f"topics not ready in {timeout_s}s: {sorted(wanted)}")
            time.sleep(0.1)
    except KafkaException as exc:
        raise DependencyUnavailable("kafka", str(exc)) from exc


def _all_partitions_led(client: AdminClient, names: set[str]) -> bool:
    """True when every partition of every topic in `names` exists and has a leader."""
    topics = client.list_topics(timeout=10).topics
    for name in names:
        meta = topics.get(name)
        if meta is None or meta.error is not None or not meta.partitions:
            return False
        if any(p.leader < 0 or p.error is not None for p in meta.partitions.values()):
            return False
    return True


def cluster_broker_ports(client: AdminClient, timeout_s: float) -> list[int]:
    """The ports of the cluster's brokers (a DescribeCluster request); KafkaException when the
    cluster does not answer within `timeout_s`."""
    description = client.describe_cluster(request_timeout=timeout_s).result()
    return sorted(node.port for node in description.nodes)


def watermarks(client: Consumer, topic_name: str, timeout_s: float = 10) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} offsets of `topic_name` from the broker ({} if it does not exist)."""
    meta = client.list_topics(topic_name, timeout=timeout_s).topics.get(topic_name)
    if meta is None or meta.error is not None:
        return {}
    out: dict[int, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout_s
    for partition in sorted(meta.partitions):
        while True:
            try:
                marks = client.get_watermark_offsets(TopicPartition(topic_name, partition), timeout=timeout_s)
                break
            except KafkaException as exc:  # e.g. NOT_LEADER_FOR_PARTITION while leadership settles
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and error.retriable()
                if not retriable and not (isinstance(error, KafkaError) and error.code() in _SETTLING):
                    raise
                if time.monotonic() > deadline:
                    raise DependencyUnavailable(
                        "kafka", f"offsets of {topic_name}[{partition}]: {exc}"
                    ) from exc
                time.sleep(0.1)
        if marks is None:
            raise DependencyUnavailable("kafka", f"no offsets for {topic_name}[{partition}]")
        out[partition] = (int(marks[0]), int(marks[1]))
    return out


_SETTLING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE})
