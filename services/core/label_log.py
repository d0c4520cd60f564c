"""Reading the labels of record: the compacted `labels` topic replayed from the start.

Used by `labelloop export`, the benchmark, the retraining service's rebuild and the final-label
fence (:class:`PublishedLabels`: is a decision already in the log?); human-tasks asks
:class:`PublishedAnswers` whether an answer's `annotations` record is. `latest_labels`
keeps the latest event per item id (the same rule compaction applies); `label_records` keeps
every record, so a claim of "one final label per item" can be checked against the raw topic.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from typing import Any

from confluent_kafka import KafkaException
from google.protobuf.message import DecodeError

from labelloop.core import kafka_clients
from labelloop.core.errors import DependencyUnavailable
from labelloop.core.topics import ANNOTATIONS, LABELS, Topic, item_key
from labelloop.v1 import events_pb2


def replay(
    bootstrap: str,
    prefix: str,
    topic: Topic = LABELS,
    timeout_s: float = 30,
    project_id: str | None = None,
    *,
    read_committed: bool = True,
    since_ms: int | None = None,
) -> Iterator[Any]:
    """Every record of `topic` from its start up to its end offsets at call time, decoded
    (undecodable records are skipped); with `project_id`, only the records keyed by that
    project's items (the others are not decoded); with `since_ms`, only from the first record
    timestamped at or after it (epoch milliseconds) in each partition. Reads without a consumer
    group: commits nothing. Read committed (what every consumer of the pipeline sees: no record
    of an aborted transaction); `read_committed=False` shows every record written, aborted ones
    included."""
    wanted = None if project_id is None else item_key(project_id, "").encode()
    name = topic.name(prefix)
    isolation = "read_committed" if read_committed else "read_uncommitted"
    consumer = kafka_clients.reader(bootstrap, "labelloop-replay", isolation_level=isolation)
    try:
        marks = kafka_clients.watermarks(consumer, name, timeout_s)
        ends = {partition: high for partition, (low, high) in marks.items() if high > low}
        starts = dict.fromkeys(ends, kafka_clients.OFFSET_BEGINNING)
        if since_ms is not None and ends:
            found = consumer.offsets_for_times(
                [kafka_clients.TopicPartition(name, p, since_ms) for p in sorted(ends)], timeout=timeout_s
            )
            # -1: no record at or after `since_ms` in that partition
            starts = {tp.partition: tp.offset for tp in found if 0 <= tp.offset < ends[tp.partition]}
            ends = {p: ends[p] for p in starts}
        if not ends:
            return
        consumer.assign([kafka_clients.TopicPartition(name, p, starts[p]) for p in sorted(ends)])
        remaining = set(ends)
        deadline = time.monotonic() + timeout_s
        while remaining:
            # transaction markers take offsets but are never delivered, so a partition is read
            # when the consumer's position (past the markers) reaches its end offset
            records = kafka_clients.consume_available(consumer, 5000, 0.2)
            for record in records:
                partition = record.partition()
                if partition not in remaining or record.offset() >= ends[partition]:
                    continue
                if wanted is not None and not (record.key() or b"").startswith(wanted):
                    continue
                message = _decode(topic, record.value())
                if message is not None:
                    yield message
            positions = consumer.position([kafka_clients.TopicPartition(name, p) for p in remaining])
            remaining -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
            if records:
                deadline = time.monotonic() + timeout_s
            elif remaining and time.monotonic() > deadline:
                raise TimeoutError(f"reading {name}: no records within {timeout_s}s before its end offsets")
    finally:
        consumer.close()


def _decode(topic: Topic, value: bytes | None) -> Any:
    """The decoded message, or None for a tombstone or a corrupt record (not a label)."""
    if value is None:
        return None
    try:
        return topic.decode(value)
    except DecodeError:
        return None


def latest_labels(
    bootstrap: str, prefix: str, project_id: str | None = None
) -> dict[str, events_pb2.LabelFinalized]:
    """The latest final label per item id of `project_id`, or per "<project>/<item id>" of all."""
    out: dict[str, events_pb2.LabelFinalized] = {}
    for label in replay(bootstrap, prefix, LABELS, project_id=project_id):
        item = label.ingested.item
        if project_id is None:
            out[item_key(item.project_id, item.item_id)] = label
        elif item.project_id == project_id:
            out[item.item_id] = label
    return out


def label_records(
    bootstrap: str, prefix: str, project_id: str, *, read_committed: bool = True
) -> dict[str, list[events_pb2.LabelFinalized]]:
    """Every final-label record of `project_id` in the labels topic, per item id, in topic order
    (one entry per record: two records for one item are two entries, unlike `latest_labels`);
    read committed unless `read_committed=False` (then aborted records count too)."""
    out: dict[str, list[events_pb2.LabelFinalized]] = {}
    for label in replay(bootstrap, prefix, LABELS, project_id=project_id, read_committed=read_committed):
        item = label.ingested.item
        if item.project_id == project_id:
            out.setdefault(item.item_id, []).append(label)
    return out


def duplicated(records: dict[str, list[events_pb2.LabelFinalized]]) -> dict[str, int]:
    """Item id -> number of records, for the items with more than one final-label record."""
    return {item_id: len(labels) for item_id, labels in records.items() if len(labels) > 1}


#: How far before a claim (or a lease) the search of the log starts: a record's timestamp is set
#: by its producer after the claim; this covers clock differences between the hosts.
SLACK_MS = 300_000


def _records_since(
    bootstrap: str, prefix: str, topic: Topic, project_id: str, since_ms: int, timeout_s: float
) -> Iterator[Any]:
    """`replay` of one project's records from `since_ms - SLACK_MS` on, read committed, with
    Kafka's failures as DependencyUnavailable naming the topic."""
    try:
        yield from replay(
            bootstrap, prefix, topic, timeout_s, project_id, since_ms=max(0, since_ms - SLACK_MS)
        )
    except (KafkaException, TimeoutError) as exc:
        raise DependencyUnavailable("kafka", f"reading what {topic.base} already holds: {exc}") from exc


class PublishedLabels:
    """What the `labels` topic already holds for some items, read committed: the final-label
    fence asks it before publishing a decision again whose first publication was never confirmed
    (core/final_labels.py), since a crash after the commit and before the confirm leaves the
    label in the log."""

    def __init__(self, bootstrap: str, prefix: str, timeout_s: float = 30) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.timeout_s = timeout_s

    def records(
        self, project_id: str, claimed_ms: dict[str, int]
    ) -> dict[str, list[events_pb2.LabelFinalized]]:
        """The final-label records of those items of `project_id` (item id -> its claim time, epoch
        ms) from the earliest claim on, per item id, in topic order. DependencyUnavailable when
        Kafka does not answer."""
        if not claimed_ms:
            return {}
        out: dict[str, list[events_pb2.LabelFinalized]] = {}
        since = min(claimed_ms.values())
        for label in _records_since(self.bootstrap, self.prefix, LABELS, project_id, since, self.timeout_s):
            item = label.ingested.item
            if item.project_id == project_id and item.item_id in claimed_ms:
                out.setdefault(item.item_id, []).append(label)
        return out


class PublishedAnswers:
    """Which answers already have their record in the `annotations` topic, read committed:
    human-tasks asks it before producing again the events of an answer whose production was never
    marked done (human_tasks/api.py), since a crash after the commit and before that mark leaves
    the record in the log (and a second one would count the answer twice: audits, agreement)."""

    def __init__(self, bootstrap: str, prefix: str, timeout_s: float = 30) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.timeout_s = timeout_s

    def leases(self, project_id: str, lease_ids: Collection[str], since_ms: int) -> set[str]:
        """Those of `lease_ids` (answers of `project_id` leased at or after `since_ms`, epoch ms)
        whose `annotations` record is in the log. DependencyUnavailable when Kafka does not answer."""
        wanted = set(lease_ids)
        if not wanted:
            return set()
        return {
            a.lease_id
            for a in _records_since(
                self.bootstrap, self.prefix, ANNOTATIONS, project_id, since_ms, self.timeout_s
            )
            if a.project_id == project_id and a.lease_id in wanted
        }
