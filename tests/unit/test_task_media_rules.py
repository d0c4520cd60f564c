"""GetTaskMedia's pure checks (human_tasks/media.py): who holds a live lease, and the file read
with its cap and digest, against a media store in a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.core.errors import FailedPrecondition, NotFound
from labelloop.core.media import MediaStore
from labelloop.datasets.images import png_bytes
from labelloop.human_tasks.media import check_live_lease, read_task_media
from labelloop.v1 import common_pb2

LIVE = {"annotator": "ann", "status": "leased", "expires": "200"}


def test_only_the_holder_of_a_live_lease_passes() -> None:
    check_live_lease(LIVE, "ann", now=100)
    for lease, who, now in (
        (LIVE, "bo", 100),
        (LIVE, "ann", 201),
        ({**LIVE, "status": "answered"}, "ann", 100),
        ({**LIVE, "status": "released"}, "ann", 100),
    ):
        with pytest.raises(FailedPrecondition):
            check_live_lease(lease, who, now=now)


def test_the_file_is_read_with_its_cap_and_digest(tmp_path) -> None:
    store = MediaStore((tmp_path / "media").as_uri(), max_bytes=300)
    data = png_bytes(np.full((4, 4), 7, dtype=np.uint8))
    item = common_pb2.Item(item_id="i", content=common_pb2.Content(media=store.put(data)))
    got = read_task_media(store, item)
    assert got.data == data and got.content_type == "image/png"
    with pytest.raises(FailedPrecondition, match="has no media"):
        read_task_media(store, common_pb2.Item(item_id="t", content=common_pb2.Content(text="x")))
    changed = common_pb2.Item()
    changed.CopyFrom(item)
    changed.content.media.sha256 = "0" * 64
    with pytest.raises(FailedPrecondition, match="no longer matches"):
        read_task_media(store, changed)
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8))
    large = MediaStore(store.root_uri).put(big)  # stored under the default cap
    with pytest.raises(FailedPrecondition, match="over this API's limit of 300"):
        read_task_media(store, common_pb2.Item(item_id="b", content=common_pb2.Content(media=large)))
    gone = common_pb2.Item()
    gone.CopyFrom(item)
    gone.content.media.uri = store.root_uri + "/sha256/00/missing.png"
    with pytest.raises(NotFound):
        read_task_media(store, gone)
