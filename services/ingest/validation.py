"""Validation of submitted items against their project. Each rule raises InvalidArgument
naming the field, so a client learns exactly what to fix."""

from __future__ import annotations

from collections.abc import Sequence

from labelloop.core.errors import InvalidArgument
from labelloop.core.topics import MAX_MESSAGE_BYTES
from labelloop.v1 import common_pb2, events_pb2

MAX_ITEM_ID = 256
MODALITY_NAMES = {
    common_pb2.MODALITY_TEXT: "text",
    common_pb2.MODALITY_IMAGE: "image",
    common_pb2.MODALITY_AUDIO: "audio",
    common_pb2.MODALITY_VIDEO: "video",
}


def validate_item(
    item: common_pb2.Item, project: common_pb2.Project, max_text_bytes: int, max_metadata_bytes: int
) -> None:
    """Raise InvalidArgument if `item` does not fit `project` (the project is already resolved)."""
    if len(item.item_id) > MAX_ITEM_ID:
        raise InvalidArgument("item.item_id", f"longer than {MAX_ITEM_ID} characters")
    if any(ord(c) < 32 for c in item.item_id):
        raise InvalidArgument("item.item_id", "contains control characters")
    modality = project.spec.modality
    body = item.content.WhichOneof("body")
    if body is None:
        raise InvalidArgument("item.content", "is empty: set content.text or content.media")
    if modality == common_pb2.MODALITY_TEXT:
        if body != "text":
            raise InvalidArgument(
                "item.content", f"project {project.spec.project_id!r} takes text items, got a media reference"
            )
        if not item.content.text.strip():
            raise InvalidArgument("item.content.text", "is empty")
        size = len(item.content.text.encode("utf-8"))
        if size > max_text_bytes:
            raise InvalidArgument("item.content.text", f"is {size} bytes, over the limit of {max_text_bytes}")
    else:
        name = MODALITY_NAMES.get(modality, "media")
        if body != "media":
            raise InvalidArgument(
                "item.content",
                f"project {project.spec.project_id!r} takes {name} items by reference, got text",
            )
        if not item.content.media.uri:
            raise InvalidArgument("item.content.media.uri", "is empty")
    meta = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in item.metadata.items())
    if meta > max_metadata_bytes:
        raise InvalidArgument("item.metadata", f"is {meta} bytes, over the limit of {max_metadata_bytes}")
    largest = largest_event_bytes(item, project.spec.labels)
    if largest > MAX_MESSAGE_BYTES:
        raise InvalidArgument(
            "item",
            f"is {item.ByteSize()} bytes; the largest event it causes (a withdrawal, which carries it "
            f"three times, as a dead letter) would be {largest} bytes, over the {MAX_MESSAGE_BYTES} "
            "bytes of a Kafka message: send a smaller text (or metadata)",
        )


def largest_event_bytes(item: common_pb2.Item, labels: Sequence[str]) -> int:
    """The size in bytes of the largest record `item` can cause: a withdrawal (`TaskRouted` with
    the item in `ingested`, in `prediction.ingested` and in `withdraw.label.ingested`, and a score
    per label), wrapped in a dead letter. Computed exactly when it might come near the limit;
    small items (the usual case) take a cheap upper bound."""
    label_bytes = sum(len(label.encode("utf-8")) + 16 for label in labels)
    bound = 3 * (item.ByteSize() + 64) + label_bytes + 2048
    if bound <= MAX_MESSAGE_BYTES // 2:
        return bound
    ingested = events_pb2.ItemIngested(item=item, channel="grpc-stream")
    ingested.ingested_at.GetCurrentTime()
    ingested.rescore.requested_at.GetCurrentTime()
    scores = [common_pb2.ClassScore(label=label, probability=0.5) for label in labels]
    prediction = events_pb2.Prediction(
        ingested=ingested, model_name="m" * 128, model_version=2**40, scores=scores, no_model=False
    )
    label = events_pb2.LabelFinalized(
        ingested=ingested, labels=[max(labels, key=len, default="")], model_name="m" * 128
    )
    task = events_pb2.TaskRouted(
        task_id=item.item_id,
        ingested=ingested,
        prediction=prediction,
        withdraw=events_pb2.Withdrawal(label=label),
        priority=1.0,
    )
    task.routed_at.GetCurrentTime()
    letter = events_pb2.DeadLetter(
        source_topic="t" * 255,
        key=f"{item.project_id}/{item.item_id}".encode(),
        value=task.SerializeToString(),
    )
    return letter.ByteSize() + 1024  # the reason, service, error type and timestamps
