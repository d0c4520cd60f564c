"""Labeled text datasets in Labelloop's generic import format.

Public API (used by `labelloop import` and `labelloop bench`):

- :func:`load` — a built-in dataset's name (``20newsgroups``, ``spamassassin``, ``bbcnews``, and
  the image dataset ``fashion-mnist``) or a path to a user's JSONL/CSV file;
- :func:`load_builtin`, :func:`load_file`, :func:`write_jsonl`, :data:`BUILTIN_DATASETS`;
- :class:`Record` (``{"id", "text", "label"[, "metadata"]}``), :class:`DatasetError`,
  :class:`DatasetNotFetchedError`.
"""

from __future__ import annotations

from pathlib import Path

from labelloop.datasets.builtin import BUILTIN_DATASETS, EXPECTED_SIZES, datasets_dir, load_builtin
from labelloop.datasets.files import load_file
from labelloop.datasets.records import (
    STREAM_SEED,
    DatasetError,
    DatasetNotFetchedError,
    MediaRecord,
    Record,
    content_of,
    labels_of,
    stream_order,
    write_jsonl,
)

__all__ = [
    "BUILTIN_DATASETS",
    "EXPECTED_SIZES",
    "STREAM_SEED",
    "DatasetError",
    "DatasetNotFetchedError",
    "MediaRecord",
    "Record",
    "content_of",
    "datasets_dir",
    "labels_of",
    "load",
    "load_builtin",
    "load_file",
    "stream_order",
    "write_jsonl",
]


def load(name_or_path: str | Path, limit: int | None = None) -> list[Record]:
    """Load a built-in dataset by name (in its stream order) or a labeled file (in file order).

    A string that names a built-in dataset wins over a file of the same name. ``limit`` keeps
    the first ``limit`` items.
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_DATASETS:
        return load_builtin(name_or_path, limit)
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be a positive number of items, got {limit}")
    records = load_file(name_or_path)
    return records if limit is None else records[:limit]
