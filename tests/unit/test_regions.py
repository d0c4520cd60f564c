"""Spans and boxes of answers (human_tasks/regions.py): validation naming the field, the stored
form, and which annotator's regions a final label carries."""

from __future__ import annotations

import math

import pytest

from labelloop.core.errors import InvalidArgument
from labelloop.human_tasks.regions import check_regions, decode_regions, encode_regions, regions_for_label
from labelloop.v1 import common_pb2

LABELS = ["person", "place"]
TEXT_ITEM = common_pb2.Item(item_id="t", content=common_pb2.Content(text="Zoë met Bob"))
IMAGE_ITEM = common_pb2.Item(
    item_id="m", content=common_pb2.Content(media=common_pb2.MediaRef(uri="file:///m.png"))
)


def span(start: int, end: int, label: str = "person") -> common_pb2.Span:
    return common_pb2.Span(start=start, end=end, label=label)


def box(x: float = 0, y: float = 0, w: float = 1, h: float = 1, label: str = "place") -> common_pb2.Box:
    return common_pb2.Box(x=x, y=y, w=w, h=h, label=label)


def test_good_regions_pass() -> None:
    check_regions([span(0, 3), span(8, 11, "place")], [], TEXT_ITEM, LABELS)  # "Zoë" is 3 code points
    check_regions([], [box(0, 0, 0.5, 2)], IMAGE_ITEM, LABELS)
    check_regions([], [], TEXT_ITEM, LABELS)


@pytest.mark.parametrize(
    ("spans", "boxes", "item", "field"),
    [
        ([span(8, 12)], [], TEXT_ITEM, "spans[0].end"),  # past the text (11 code points)
        ([span(3, 3)], [], TEXT_ITEM, "spans[0].end"),
        ([span(4, 2)], [], TEXT_ITEM, "spans[0].end"),
        ([span(0, 1), span(-1, 2)], [], TEXT_ITEM, "spans[1].start"),
        ([span(0, 3, "animal")], [], TEXT_ITEM, "spans[0].label"),
        ([span(0, 1)], [], IMAGE_ITEM, "spans[0]"),
        ([], [box(w=-1)], IMAGE_ITEM, "boxes[0].w"),
        ([], [box(h=0)], IMAGE_ITEM, "boxes[0].h"),
        ([], [box(), box(x=-0.5)], IMAGE_ITEM, "boxes[1].x"),
        ([], [box(y=math.nan)], IMAGE_ITEM, "boxes[0].y"),
        ([], [box(label="")], IMAGE_ITEM, "boxes[0].label"),
        ([], [box()], TEXT_ITEM, "boxes[0]"),
    ],
)
def test_bad_regions_name_the_field(spans, boxes, item, field) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_regions(spans, boxes, item, LABELS)
    assert info.value.field == field


def test_stored_form_round_trips_and_is_empty_without_regions() -> None:
    assert encode_regions([], []) == ""
    assert decode_regions("") == ([], []) and decode_regions(None) == ([], [])
    stored = encode_regions([span(0, 3)], [box(1, 2, 3, 4)])
    assert stored.isascii()
    assert decode_regions(stored) == ([span(0, 3)], [box(1, 2, 3, 4)])


def test_the_final_label_carries_the_first_agreeing_annotator_with_regions() -> None:
    answers = {"cy": "a", "al": "b", "bo": "a", "di": "a"}
    regions = {
        "al": encode_regions([span(0, 1)], []),
        "di": encode_regions([span(1, 2)], []),
        "cy": encode_regions([span(2, 3)], []),
    }
    # "al" disagrees, "bo" agrees but marked nothing: "cy" is the first agreeing one with regions
    assert regions_for_label(answers, regions, "a") == ([span(2, 3)], [])
    assert regions_for_label(answers, {}, "a") == ([], [])
