"""A leased task's media for the annotator holding the lease (HumanTaskService.GetTaskMedia).

Who may see it is decided from the lease alone: the caller must be scoped to the lease's project
(PermissionDenied otherwise, as for every lease-bound call), hold the lease (an admin acts for the
holder), and the lease must be live (leased, not expired: an answered or released lease shows
nothing more). Then the file is read from the media root with a size cap and its SHA-256 checked
against the item's reference, so a person sees exactly the bytes ingest accepted.
"""

from __future__ import annotations

import hashlib
import time

from labelloop.core.errors import FailedPrecondition
from labelloop.core.media import MediaStore
from labelloop.v1 import common_pb2, human_tasks_pb2

__all__ = ["check_live_lease", "read_task_media"]


def check_live_lease(lease: dict[str, str], annotator: str, now: float | None = None) -> None:
    """FailedPrecondition unless ``lease`` (a lease record) is held by ``annotator`` and live."""
    if lease.get("annotator") != annotator:
        raise FailedPrecondition("the lease is held by another annotator")
    now = time.time() if now is None else now
    if lease.get("status") != "leased" or float(lease.get("expires", "0")) < now:
        raise FailedPrecondition("the lease has expired, was released or was answered; lease the task again")


def read_task_media(store: MediaStore, item: common_pb2.Item) -> human_tasks_pb2.TaskMedia:
    """The media file of ``item``: FailedPrecondition for an item without media, a file over the
    store's ``max_bytes`` or one whose SHA-256 differs from the reference's; NotFound when gone."""
    if item.content.WhichOneof("body") != "media":
        raise FailedPrecondition(f"item {item.item_id!r} has no media (it is text)")
    ref = item.content.media
    handle, size = store.open(ref.uri)
    with handle:
        if size > store.max_bytes:
            raise FailedPrecondition(
                f"the media file is {size} bytes, over this API's limit of {store.max_bytes} "
                "(LABELLOOP_MAX_MEDIA_BYTES)"
            )
        data = handle.read(store.max_bytes + 1)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > store.max_bytes or digest != ref.sha256.lower():
        raise FailedPrecondition("the media file no longer matches the SHA-256 ingest accepted")
    return human_tasks_pb2.TaskMedia(data=data, content_type=ref.content_type, sha256=digest)
