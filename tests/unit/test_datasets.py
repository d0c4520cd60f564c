"""Unit tests of labelloop.datasets: built-in counts and formats, the file loader's errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from labelloop.datasets import (
    EXPECTED_SIZES,
    DatasetError,
    DatasetNotFetchedError,
    Record,
    datasets_dir,
    labels_of,
    load,
    load_builtin,
    load_file,
    stream_order,
    write_jsonl,
)
from labelloop.datasets.builtin import anonymous_id

EXPECTED_CLASSES = {"20newsgroups": 20, "spamassassin": 2, "bbcnews": 5}

fetched = pytest.mark.skipif(
    not all((datasets_dir() / name / ".complete").is_file() for name in EXPECTED_SIZES),
    reason="built-in datasets not fetched: run `make setup`",
)


@fetched
@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_builtin_dataset_counts_and_format(name: str) -> None:
    records = load_builtin(name)
    assert len(records) == EXPECTED_SIZES[name]
    assert len(labels_of(records)) == EXPECTED_CLASSES[name]
    assert len({r["id"] for r in records}) == len(records), "ids must be unique"
    for r in records:
        assert set(r) == {"id", "text", "label"}
        assert isinstance(r["text"], str) and r["text"].strip()
        assert r["label"]
    # Stream order is not sorted by class: the first 200 items already hold most classes.
    first = Counter(r["label"] for r in records[:200])
    assert len(first) == EXPECTED_CLASSES[name]
    # And it is deterministic.
    assert [r["id"] for r in load_builtin(name, limit=50)] == [r["id"] for r in records[:50]]


@fetched
@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_builtin_ids_and_metadata_carry_no_class(name: str) -> None:
    """An id like `business/001` or `spam-2/00017` gives the label away to anything that sees ids."""
    records = load_builtin(name)
    classes = [label.lower() for label in labels_of(records)]
    for r in records:
        assert not any(c in r["id"].lower() for c in classes), f"{r['id']!r} names a class"
        assert not r.get("metadata"), f"{r['id']!r} has metadata {r.get('metadata')}"
    assert [r["id"] for r in records[:3]] == [anonymous_id(name, n) for n in range(3)]


def test_builtin_ids_are_positions_in_the_stream_order_of_the_source_keys() -> None:
    from labelloop.datasets.builtin import _anonymous_stream, anonymous_id

    source: list[Record] = [
        {"id": f"{label}/{i:03d}", "text": f"{label} {i}", "label": label}
        for label in ("business", "tech")
        for i in range(20)
    ]
    renamed = _anonymous_stream("news", source)
    assert [r["text"] for r in renamed] == [r["text"] for r in stream_order(source)]
    assert [r["id"] for r in renamed] == [anonymous_id("news", n) for n in range(40)]
    assert len({r["id"] for r in renamed}) == 40
    assert not any("business" in r["id"] or "tech" in r["id"] for r in renamed)


@fetched
def test_spamassassin_labels_balance() -> None:
    counts = Counter(r["label"] for r in load_builtin("spamassassin"))
    assert counts == {"ham": 4150, "spam": 1896}


def test_missing_builtin_says_run_make_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELLOOP_DATASETS_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFetchedError, match="make setup"):
        load_builtin("bbcnews")


def test_unknown_builtin_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="20newsgroups"):
        load_builtin("mnist")


def test_stream_order_is_independent_of_input_order_and_mixes_classes() -> None:
    records: list[Record] = [
        {"id": f"{label}-{i}", "text": "t", "label": label} for label in "ab" for i in range(50)
    ]
    ordered = stream_order(records)
    assert [r["id"] for r in ordered] == [r["id"] for r in stream_order(list(reversed(records)))]
    assert sorted(r["id"] for r in ordered) == sorted(r["id"] for r in records)
    assert {r["label"] for r in ordered[:20]} == {"a", "b"}
    assert [r["id"] for r in stream_order(records, seed=1)] != [r["id"] for r in ordered]


def test_write_jsonl_then_load_file_round_trips(tmp_path: Path) -> None:
    records: list[Record] = [
        {"id": "1", "text": "héllo\nworld", "label": "x"},
        {"id": "2", "text": "bye", "label": "y", "metadata": {"source": "web"}},
    ]
    path = tmp_path / "sub" / "data.jsonl"
    assert write_jsonl(records, path) == 2
    assert load_file(path) == records
    assert load(str(path), limit=1) == records[:1]


def test_jsonl_ids_metadata_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    lines = [
        {"text": "a", "label": 1, "lang": "en", "score": 0.5},
        {"id": 7, "text": "b", "label": "0", "metadata": {"k": [1, 2]}},
    ]
    path.write_text(json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n", encoding="utf-8")
    got = load_file(path)
    assert got[0] == {"id": "items-1", "text": "a", "label": "1", "metadata": {"lang": "en", "score": "0.5"}}
    assert got[1] == {"id": "7", "text": "b", "label": "0", "metadata": {"k": "[1, 2]"}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a", "label": "x"}\n{"text": "b", "label": \n', r"items\.jsonl:2: not valid JSON"),
        ('{"text": "a", "label": "x"}\n["b", "x"]\n', r":2: expected a JSON object"),
        ('{"label": "x"}\n', r":1: missing 'text'"),
        ('{"text": "  ", "label": "x"}\n', r":1: empty 'text'"),
        ('{"text": "a"}\n', r":1: missing or empty 'label'"),
        ('{"text": 3, "label": "x"}\n', r":1: 'text' must be a string"),
        (
            '{"id": "q", "text": "a", "label": "x"}\n{"id": "q", "text": "b", "label": "x"}\n',
            r":2: duplicate 'id'",
        ),
        ("\n", r"no items"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_file(path)


def test_csv_columns_metadata_and_multiline_fields(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('ID,Text,Label,lang\nA1,"two\nlines",spam,en\n,plain,ham,fr\n', encoding="utf-8")
    got = load_file(path)
    assert got == [
        {"id": "A1", "text": "two\nlines", "label": "spam", "metadata": {"lang": "en"}},
        {"id": "items-4", "text": "plain", "label": "ham", "metadata": {"lang": "fr"}},
    ]


def test_unlabeled_csv_for_import(tmp_path: Path) -> None:
    path = tmp_path / "items.tsv"
    path.write_text("text\thint\nhello\tx\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"items\.tsv:2: missing or empty 'label'"):
        load_file(path)
    assert load_file(path, require_label=False) == [
        {"id": "items-2", "text": "hello", "label": "", "metadata": {"hint": "x"}}
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("body,label\nx,y\n", r"items\.csv:1: the header has no 'text' column \(columns: body, label\)"),
        ("text,label\na,x\nb,x,extra\n", r"items\.csv:3: 3 columns, but the header has 2"),
        ("text,label\na,x\n,x\n", r"items\.csv:3: empty 'text'"),
        ("text,Text\na,b\n", r":1: column 'text' appears more than once"),
        ("", r"empty file"),
    ],
)
def test_csv_errors_name_the_line_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "items.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_file(path)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "items.xlsx"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unknown format '\.xlsx'"):
        load_file(path)
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "nope.jsonl")
