"""Reading any user's labeled (or unlabeled) text file into the generic import format.

Formats, chosen by the file name's extension:

- ``.jsonl`` / ``.ndjson`` / ``.json``: one JSON object per line (blank lines are skipped). Keys
  ``text`` (required, a non-empty string), ``label`` (a string or number), ``id`` (a string or
  number); a ``metadata`` object and every other key become metadata.
- ``.csv`` / ``.tsv``: a header row naming the columns ``text``, ``label``, ``id`` (case-insensitive);
  every other column becomes metadata. Quoted fields may span lines.

Metadata values are strings (non-string JSON values are stored as their JSON text), matching the
``map<string, string> metadata`` of ``labelloop.v1.Item``. An item without an id gets
``<file stem>-<line number>`` so re-importing the same file yields the same ids (ids are the
pipeline's idempotency keys). A duplicate id is an error, not a silent merge.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labelloop.datasets.records import DatasetError, Record

__all__ = ["load_file"]

_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_RESERVED = ("id", "text", "label")


def load_file(path: str | Path, *, require_label: bool = True) -> list[Record]:
    """Read a JSONL or CSV/TSV file of items, in file order.

    With ``require_label`` (the default, for ``labelloop bench``) every item must have a non-empty
    label; without it (for ``labelloop import``) a missing label is returned as ``""``.
    Raises :class:`DatasetError` naming the file and line (and the column or key) of the first
    bad item, or :class:`FileNotFoundError` when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        rows = _jsonl_rows(path)
    elif suffix in _CSV_DELIMITERS:
        rows = _csv_rows(path, _CSV_DELIMITERS[suffix])
    else:
        raise DatasetError(f"{path}: unknown format {suffix or '(no extension)'!r}; use .jsonl, .csv or .tsv")

    records: list[Record] = []
    first_line_of: dict[str, int] = {}
    for line, fields, metadata in rows:
        where = f"{path}:{line}"
        text = fields.get("text")
        if text is None:
            raise DatasetError(f"{where}: missing 'text'")
        if not text.strip():
            raise DatasetError(f"{where}: empty 'text'")
        label = (fields.get("label") or "").strip()
        if require_label and not label:
            raise DatasetError(f"{where}: missing or empty 'label'")
        item_id = (fields.get("id") or "").strip() or f"{path.stem}-{line}"
        if item_id in first_line_of:
            raise DatasetError(
                f"{where}: duplicate 'id' {item_id!r} (first on line {first_line_of[item_id]})"
            )
        first_line_of[item_id] = line
        record: Record = {"id": item_id, "text": text, "label": label}
        if metadata:
            record["metadata"] = metadata
        records.append(record)
    if not records:
        raise DatasetError(f"{path}: no items")
    return records


_Row = tuple[int, dict[str, str], dict[str, str]]


def _scalar(value: object, where: str, key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetError(f"{where}: {key!r} must be a string or a number, got {type(value).__name__}")
    return str(value)


def _meta_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            fields: dict[str, str] = {}
            for key in _RESERVED:
                if key in obj and obj[key] is not None:
                    if key == "text" and not isinstance(obj[key], str):
                        raise DatasetError(f"{where}: 'text' must be a string, got {type(obj[key]).__name__}")
                    fields[key] = _scalar(obj[key], where, key)
            metadata: dict[str, str] = {}
            nested = obj.get("metadata")
            if nested is not None:
                if not isinstance(nested, dict):
                    raise DatasetError(f"{where}: 'metadata' must be an object, got {type(nested).__name__}")
                metadata.update({str(k): _meta_value(v) for k, v in nested.items()})
            for key, value in obj.items():
                if key not in _RESERVED and key != "metadata":
                    metadata[key] = _meta_value(value)
            yield line_no, fields, metadata


def csv_header(path: Path, reader: Any, required: str) -> tuple[list[str], list[str]]:
    """The column names of a CSV file's header row, as written and lowercased; DatasetError
    naming the file and line when it is missing, unreadable, lacks `required` or repeats one."""
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty file (expected a header row with a {required!r} column)") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num or 1}: bad CSV ({exc})") from None
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    if required not in lowered:
        raise DatasetError(f"{path}:1: the header has no {required!r} column (columns: {', '.join(names)})")
    for name in set(lowered):
        if name and lowered.count(name) > 1:
            raise DatasetError(f"{path}:1: column {name!r} appears more than once in the header")
    return names, lowered


def _csv_rows(path: Path, delimiter: str) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        names, lowered = csv_header(path, reader, "text")
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DatasetError(f"{path}:{start}: bad CSV ({exc})") from None
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise DatasetError(f"{path}:{start}: {len(row)} columns, but the header has {len(names)}")
            fields: dict[str, str] = {}
            metadata: dict[str, str] = {}
            for name, low, cell in zip(names, lowered, row, strict=True):
                if low in _RESERVED:
                    fields[low] = cell
                elif name:
                    metadata[name] = cell
            yield start, fields, metadata
