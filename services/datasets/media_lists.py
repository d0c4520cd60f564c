"""A list of media files to import (``labelloop import --list FILE``): CSV or JSONL rows naming
image files, copied into the media store one row at a time; a bad row is reported and skipped,
the good rows are still imported.

Columns (CSV header, case-insensitive) or keys (one JSON object per line):

- ``path`` (required): the image file, relative to the list's own folder, or absolute;
- ``item_id`` (optional): the item's id; default the file's stem, as for a folder import;
- ``label`` (optional): never sent and never made metadata (an item carries no label: people
  and the model label it); :attr:`MediaList.has_label` tells the caller so it can say so;
- every other column or key is metadata (an empty CSV cell is none; a JSON ``metadata`` object
  is merged in; non-string JSON values are kept as their JSON text), carried through to the
  exported labels.

A row is rejected, with a line ``<list>:<line>: <problem>``, when: it is not valid CSV/JSON or not
an object, ``path`` is missing or empty, the file does not exist, is over the store's size limit
or is no accepted image (by its bytes), or its id repeats an earlier row's. A list without a
``path`` column, in an unknown format or without rows is an error for the whole list.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labelloop.core.errors import InvalidArgument
from labelloop.core.media import MediaStore
from labelloop.datasets.files import csv_header
from labelloop.datasets.records import DatasetError, Record

__all__ = ["MediaList", "load_media_list"]

_RESERVED = ("path", "item_id", "label")


@dataclass
class MediaList:
    """What a list gave: the records of its good rows (their images now in the store), each
    record's line in the list (``lines[i]`` for ``records[i]``), one line per rejected row, and
    whether the list had a ``label`` column or key (ignored)."""

    records: list[Record] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    has_label: bool = False


class _RowError(ValueError):
    """One row is bad; the message says why (the caller adds where)."""


def load_media_list(list_path: str | Path, store: MediaStore) -> MediaList:
    """Read ``list_path`` (``.csv`` or ``.jsonl``/``.ndjson``) and copy each good row's image into
    ``store`` (content-addressed: importing it again stores nothing new).

    Raises :class:`DatasetError` for a list that cannot be read as a whole (format, header, no
    rows) and :class:`FileNotFoundError` when it is missing; bad rows land in ``problems``.
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise FileNotFoundError(f"{list_path}: no such file")
    suffix = list_path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(list_path)
    elif suffix == ".csv":
        rows = _csv_rows(list_path)
    else:
        raise DatasetError(
            f"{list_path}: unknown list format {suffix or '(no extension)'!r}; use .csv or .jsonl"
        )
    out = MediaList()
    base = list_path.resolve().parent
    first_line_of: dict[str, int] = {}
    seen_rows = 0
    for line, row in rows:
        seen_rows += 1
        try:
            if isinstance(row, _RowError):
                raise row
            fields, metadata = row
            out.has_label = out.has_label or "label" in fields
            raw_path = fields.get("path", "").strip()
            if not raw_path:
                raise _RowError("missing or empty 'path'")
            file = Path(raw_path) if Path(raw_path).is_absolute() else base / raw_path
            item_id = fields.get("item_id", "").strip() or file.stem
            if item_id in first_line_of:
                raise _RowError(f"duplicate item_id {item_id!r} (first on line {first_line_of[item_id]})")
            if not file.is_file():
                raise _RowError(f"{raw_path!r}: no such file ({file})")
            data = file.read_bytes()
            try:
                ref = store.put(data)
            except InvalidArgument as exc:
                raise _RowError(f"{raw_path!r}: {exc.reason}") from None
        except _RowError as exc:
            out.problems.append(f"{list_path}:{line}: {exc}")
            continue
        first_line_of[item_id] = line
        record: Record = {
            "id": item_id,
            "text": "",
            "label": "",
            "media": {
                "uri": ref.uri,
                "content_type": ref.content_type,
                "size_bytes": ref.size_bytes,
                "sha256": ref.sha256,
            },
        }
        if metadata:
            record["metadata"] = metadata
        out.records.append(record)
        out.lines.append(line)
    if not seen_rows:
        raise DatasetError(f"{list_path}: no rows")
    return out


_Row = tuple[int, tuple[dict[str, str], dict[str, str]] | _RowError]


def _text(value: object, key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _RowError(f"{key!r} must be a string or a number, got {type(value).__name__}")
    return str(value)


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise _RowError(f"expected a JSON object, got {type(obj).__name__}")
                fields = {k: _text(obj[k], k) for k in _RESERVED if obj.get(k) is not None}
                metadata: dict[str, str] = {}
                nested = obj.get("metadata")
                if nested is not None:
                    if not isinstance(nested, dict):
                        raise _RowError(f"'metadata' must be an object, got {type(nested).__name__}")
                    metadata.update({str(k): _meta(v) for k, v in nested.items()})
                metadata.update({k: _meta(v) for k, v in obj.items() if k not in (*_RESERVED, "metadata")})
                yield line_no, (fields, metadata)
            except json.JSONDecodeError as exc:
                yield line_no, _RowError(f"not valid JSON ({exc.msg} at column {exc.colno})")
            except _RowError as exc:
                yield line_no, exc


def _meta(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _csv_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        names, lowered = csv_header(path, reader, "path")
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, _RowError(f"bad CSV ({exc})")
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                yield start, _RowError(f"{len(row)} columns, but the header has {len(names)}")
                continue
            fields: dict[str, str] = {}
            metadata: dict[str, str] = {}
            for name, low, cell in zip(names, lowered, row, strict=True):
                if low in _RESERVED:
                    fields[low] = cell
                elif name and cell:
                    metadata[name] = cell
            yield start, (fields, metadata)
