"""Every Kafka topic of Labelloop, defined once: base name, message type, partitions, config.

Full names carry a configurable prefix (`LABELLOOP_TOPIC_PREFIX`, default "labelloop") so several
deployments can share a cluster: `ITEMS.name("labelloop")` is "labelloop.items". No other module
spells a topic name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message

from labelloop.v1 import events_pb2

MAX_MESSAGE_BYTES = 2 * 1024 * 1024
"""The largest record value Labelloop produces. Every topic is created with room for it
(`max.message.bytes`, TOPIC_MAX_MESSAGE_BYTES), the local broker is configured the same, ingest
rejects an item when one of the events it causes would not fit (ingest/validation.py), a dead
letter truncates the original bytes it carries to fit, and the stream loop dead-letters an input
whose output would exceed it (core/stream.py) instead of failing the batch forever."""
TOPIC_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES + 64 * 1024  # a record batch: the value plus headroom


@dataclass(frozen=True)
class Topic:
    """A topic: its base name, the protobuf message every record's value holds, and its config."""

    base: str
    message_type: type[Message]
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def name(self, prefix: str) -> str:
        """The topic's full name under `prefix` (no prefix when empty)."""
        return f"{prefix}.{self.base}" if prefix else self.base

    def decode(self, value: bytes) -> Message:
        """Parse a record value into this topic's message type (raises DecodeError)."""
        message = self.message_type()
        message.ParseFromString(value)
        return message


ITEMS = Topic("items", events_pb2.ItemIngested, 6, description="Items accepted by ingest (key: item id).")
PREDICTIONS = Topic("predictions", events_pb2.Prediction, 6, description="Model answers (key: item id).")
TASKS = Topic("tasks", events_pb2.TaskRouted, 6, description="Work routed to people (key: item id).")
ANNOTATIONS = Topic(
    "annotations", events_pb2.AnnotationSubmitted, 6, description="One person's answer (key: item id)."
)
LABELS = Topic(
    "labels",
    events_pb2.LabelFinalized,
    6,
    config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"},
    description="Labels of record, compacted (key: item id).",
)
VOTES = Topic(
    "votes", events_pb2.VoteCast, 6, description="Votes of slow label sources, e.g. the LLM (key: item id)."
)
MODELS = Topic("models", events_pb2.ModelEvent, 1, description="Model lifecycle events (key: project id).")
DEAD_LETTERS = Topic(
    "dead-letters", events_pb2.DeadLetter, 1, description="Messages a service could not process."
)


def item_key(project_id: str, item_id: str) -> str:
    """The Kafka key of every per-item event: item ids are unique within a project, so the key
    is "<project_id>/<item_id>" (one item's events stay ordered in one partition, and the
    compacted `labels` topic keeps one label per item of each project)."""
    return f"{project_id}/{item_id}"


ALL_TOPICS: tuple[Topic, ...] = (ITEMS, PREDICTIONS, TASKS, ANNOTATIONS, LABELS, VOTES, MODELS, DEAD_LETTERS)


def by_full_name(prefix: str) -> dict[str, Topic]:
    """Map each full topic name under `prefix` to its Topic."""
    return {t.name(prefix): t for t in ALL_TOPICS}
