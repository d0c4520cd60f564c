"""Writing the labels of record to JSONL, CSV or Parquet."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labelloop.v1 import common_pb2, events_pb2

FORMATS = ("jsonl", "csv", "parquet")


def label_row(label: events_pb2.LabelFinalized) -> dict[str, Any]:
    """One exported row: the item, its final label, where the label came from, and the spans and
    boxes people marked (JSON text, so every format holds them the same way)."""
    item = label.ingested.item
    body = item.content.WhichOneof("body")
    return {
        "id": item.item_id,
        "project": item.project_id,
        "text": item.content.text if body == "text" else "",
        "uri": item.content.media.uri if body == "media" else "",
        "label": label.labels[0] if len(label.labels) == 1 else "|".join(label.labels),
        "source": common_pb2.LabelSource.Name(label.source).removeprefix("LABEL_SOURCE_").lower(),
        "confidence": round(label.confidence, 6),
        "model_name": label.model_name,
        "model_version": label.model_version,
        "annotators": ",".join(label.annotators),
        "finalized_at": label.finalized_at.ToJsonString() if label.HasField("finalized_at") else "",
        "metadata": json.dumps(dict(item.metadata), sort_keys=True),
        # the final label's regions, as JSON lists (empty "[]" when none; see common.proto Span, Box)
        "spans": json.dumps([{"start": s.start, "end": s.end, "label": s.label} for s in label.spans]),
        "boxes": json.dumps(
            [{"x": b.x, "y": b.y, "w": b.w, "h": b.h, "label": b.label} for b in label.boxes]
        ),
    }


def write_labels(labels: Iterable[events_pb2.LabelFinalized], out: Path, fmt: str) -> int:
    """Write `labels` to `out` in `fmt`; returns the row count."""
    import pandas as pd

    rows = [label_row(label) for label in labels]
    columns = list(label_row(events_pb2.LabelFinalized()).keys())
    frame = pd.DataFrame(rows, columns=columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        frame.to_json(out, orient="records", lines=True, force_ascii=False)
    elif fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return len(rows)
