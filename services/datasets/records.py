"""The generic import format shared by every dataset: one record per item.

A record is a plain dict ``{"id": str, "text": str, "label": str}`` with an optional
``"metadata": dict[str, str]`` (free-form, carried through to exported labels, like the
``metadata`` map of ``labelloop.v1.Item``). An image record has an empty ``text`` and a ``media``
reference to a file in the media store (see ``datasets/images.py``). An empty ``label`` means "unlabeled" (allowed only
when a loader is asked not to require labels). On disk it is JSONL: one JSON object per line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NotRequired, TypedDict

from labelloop.v1 import common_pb2

__all__ = [
    "STREAM_SEED",
    "DatasetError",
    "DatasetNotFetchedError",
    "MediaRecord",
    "Record",
    "content_of",
    "labels_of",
    "stream_order",
    "write_jsonl",
]

#: Seed of the deterministic stream order of the built-in datasets (see :func:`stream_order`).
STREAM_SEED = 20240613


class DatasetError(ValueError):
    """A dataset file or name is invalid; the message names the file, line and column at fault."""


class DatasetNotFetchedError(DatasetError, FileNotFoundError):
    """A built-in dataset's files are not in the cache; the message says to run `make setup`."""


class MediaRecord(TypedDict):
    """A reference to a file in the media store (the fields of ``labelloop.v1.MediaRef``)."""

    uri: str
    content_type: str
    size_bytes: int
    sha256: str


class Record(TypedDict):
    """One item of the generic import format."""

    id: str
    text: str
    label: str
    metadata: NotRequired[dict[str, str]]
    media: NotRequired[MediaRecord]
    labels: NotRequired[list[str]]  # multi-label datasets: the item's labels (`label` joins them with "|")


def content_of(record: Record) -> common_pb2.Content:
    """The item content of a record: its media reference when it has one, else its text."""
    media = record.get("media")
    if media is not None:
        return common_pb2.Content(media=common_pb2.MediaRef(**media))
    return common_pb2.Content(text=record["text"])


def stream_order(records: Iterable[Record], seed: int = STREAM_SEED) -> list[Record]:
    """Return the records in the deterministic, class-mixed stream order.

    The order is by ``sha256(f"{seed}:{id}")``: it depends only on the seed and each record's id,
    not on file-system listing order, library versions or the other records (adding an item does
    not reorder the rest). Ids must be unique; ties are impossible in practice and broken by id.
    """
    return sorted(records, key=lambda r: (hashlib.sha256(f"{seed}:{r['id']}".encode()).digest(), r["id"]))


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
    """Write records as JSONL (UTF-8, one object per line, keys id/text/label[/metadata]).

    ``metadata`` is written only when non-empty. Parent directories are created. The file is
    written to a temporary sibling and renamed, so a reader never sees half a file.
    Returns the number of records written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as out:
        for record in records:
            obj: dict[str, object] = {"id": record["id"], "text": record["text"], "label": record["label"]}
            if record.get("metadata"):
                obj["metadata"] = record["metadata"]
            if "media" in record:
                obj["media"] = record["media"]
            out.write(json.dumps(obj, ensure_ascii=False))
            out.write("\n")
            n += 1
    tmp.replace(path)
    return n


def labels_of(records: Sequence[Record]) -> list[str]:
    """The sorted distinct non-empty labels of the records (a project's label set)."""
    return sorted({r["label"] for r in records if r["label"]})
