"""Validation of submitted items against their project. Each rule raises InvalidArgument
naming the field, so a client learns exactly what to fix."""

from __future__ import annotations

from labelloop.core.errors import InvalidArgument
from labelloop.v1 import common_pb2

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
    meta = sum(len(k) + len(v) for k, v in item.metadata.items())
    if meta > max_metadata_bytes:
        raise InvalidArgument("item.metadata", f"is {meta} bytes, over the limit of {max_metadata_bytes}")
