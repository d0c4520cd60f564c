"""Spans and boxes of an answer (`labelloop.v1.Span`, `labelloop.v1.Box`): their validation, their
storage form, and which annotator's regions a final label carries. Pure functions, no I/O.

No model reads regions yet: they are accepted and kept so span and box projects need no breaking
change. The human-tasks API checks them (`check_regions`) before the answer is recorded, stores
them with it (`encode_regions`, one opaque value per answer in Redis) and copies them into the
`annotations` event and, for the consensus, into the final label (`regions_for_label`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence

from labelloop.core.errors import InvalidArgument
from labelloop.v1 import common_pb2, events_pb2

__all__ = ["MAX_REGIONS", "check_regions", "decode_regions", "encode_regions", "regions_for_label"]

#: The most spans plus boxes one answer may carry.
MAX_REGIONS = 1000


def check_regions(
    spans: Sequence[common_pb2.Span],
    boxes: Sequence[common_pb2.Box],
    item: common_pb2.Item,
    labels: Iterable[str],
) -> None:
    """Raise InvalidArgument naming the first bad field (``spans[2].end``, ``boxes[0].w``, ...).

    A span needs an item with text and ``0 <= start < end <= len(text)`` in code points; a box
    needs an item with an image (a media reference) and ``x, y >= 0``, ``w, h > 0`` (pixels; the
    image's size is not read). Every region's label is one of ``labels`` (the project's).
    """
    if len(spans) + len(boxes) > MAX_REGIONS:
        raise InvalidArgument("spans", f"{len(spans) + len(boxes)} spans and boxes, over {MAX_REGIONS}")
    allowed = set(labels)
    body = item.content.WhichOneof("body")
    for n, span in enumerate(spans):
        field = f"spans[{n}]"
        if body != "text":
            raise InvalidArgument(field, "the item has no text to mark (spans are for text items)")
        length = len(item.content.text)
        if span.start < 0:
            raise InvalidArgument(f"{field}.start", f"is {span.start}, below 0")
        if span.end <= span.start:
            raise InvalidArgument(f"{field}.end", f"is {span.end}, not after start {span.start}")
        if span.end > length:
            raise InvalidArgument(f"{field}.end", f"is {span.end}, past the end of the text ({length})")
        if span.label not in allowed:
            raise InvalidArgument(f"{field}.label", f"{span.label!r} is not in the project's label set")
    for n, box in enumerate(boxes):
        field = f"boxes[{n}]"
        if body != "media":
            raise InvalidArgument(field, "the item has no image to mark (boxes are for image items)")
        for name in ("x", "y"):
            value = getattr(box, name)
            if not value >= 0:  # also NaN
                raise InvalidArgument(f"{field}.{name}", f"is {value}, below 0")
        for name in ("w", "h"):
            value = getattr(box, name)
            if not value > 0:
                raise InvalidArgument(f"{field}.{name}", f"is {value}; a box's size must be positive")
        if box.label not in allowed:
            raise InvalidArgument(f"{field}.label", f"{box.label!r} is not in the project's label set")


def encode_regions(spans: Sequence[common_pb2.Span], boxes: Sequence[common_pb2.Box]) -> str:
    """The stored form of an answer's regions: base64 of the serialized fields ("" when none),
    text, so it sits in the lease record's hash next to the label."""
    if not spans and not boxes:
        return ""
    raw = events_pb2.AnnotationSubmitted(spans=spans, boxes=boxes).SerializeToString()
    return base64.b64encode(raw).decode("ascii")


def decode_regions(stored: str | None) -> tuple[list[common_pb2.Span], list[common_pb2.Box]]:
    """The (spans, boxes) of a value from :func:`encode_regions` (none for "" or None)."""
    if not stored:
        return [], []
    holder = events_pb2.AnnotationSubmitted()
    holder.ParseFromString(base64.b64decode(stored))
    return list(holder.spans), list(holder.boxes)


def regions_for_label(
    answers: Mapping[str, str], regions: Mapping[str, str], verdict: str
) -> tuple[list[common_pb2.Span], list[common_pb2.Box]]:
    """The regions a final label carries: those of the first annotator, by id, whose answer is
    the consensus label ``verdict`` and who marked any; none when no such annotator did."""
    for annotator in sorted(answers):
        if answers[annotator] == verdict and regions.get(annotator):
            return decode_regions(regions[annotator])
    return [], []
