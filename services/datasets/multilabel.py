"""The built-in multi-label dataset: yeast (MULAN), read offline from `make setup`'s cache.

``deploy/local/setup.d/20-datasets.sh`` copies ``river/datasets/yeast.csv.gz`` out of the PyPI
wheel of ``river`` (0.26.1; the wheel's code is never imported) into
``<datasets dir>/yeast/``. It is the canonical MULAN version (Elisseeff and Weston, NeurIPS 2001):
2,417 yeast genes, 103 numeric features (micro-array expression and phylogenetic profile), each
gene annotated with a subset of 14 functional categories (``Class1`` .. ``Class14``; 4.2 per gene
on average; every gene has at least one).

A record's ``text`` is the gene's 103 features written as numbers separated by spaces (Labelloop
items are text or media: the multi-label family detects such numeric texts and models them as
vectors, ``retraining/multilabel.py``); ``labels`` is its categories in label order, ``label``
those joined by "|". Records come in the stream order of the other built-in datasets, with ids
``sha256("yeast:<n>")[:16]``: no label information.
"""

from __future__ import annotations

import csv
import gzip

from labelloop.datasets.builtin import _require_dir, anonymous_id
from labelloop.datasets.records import DatasetError, Record, stream_order

__all__ = ["YEAST_ITEMS", "YEAST_LABELS", "load_yeast"]

YEAST_ITEMS = 2_417
YEAST_LABELS = [f"Class{i}" for i in range(1, 15)]


def load_yeast(limit: int | None = None) -> list[Record]:
    """The yeast stream (module doc); ``limit`` keeps the first ``limit`` items."""
    path = _require_dir("yeast") / "yeast.csv.gz"
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    label_columns = [header.index(label) for label in YEAST_LABELS]
    feature_columns = [i for i, name in enumerate(header) if name.startswith("Att")]
    if len(body) != YEAST_ITEMS or len(feature_columns) != 103:
        raise DatasetError(
            f"{path}: expected {YEAST_ITEMS} genes x 103 features, got {len(body)} x {len(feature_columns)}"
        )
    records: list[Record] = []
    for n, row in enumerate(body):
        labels = [label for label, i in zip(YEAST_LABELS, label_columns, strict=True) if row[i] == "1"]
        text = " ".join(row[i] for i in feature_columns)
        records.append({"id": f"gene-{n:04d}", "text": text, "label": "|".join(labels), "labels": labels})
    ordered = stream_order(records)
    out: list[Record] = [
        {"id": anonymous_id("yeast", position), "text": r["text"], "label": r["label"], "labels": r["labels"]}
        for position, r in enumerate(ordered)
    ]
    return out if limit is None else out[:limit]
