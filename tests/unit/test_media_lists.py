"""`labelloop import --list`: the CSV/JSONL list reader (datasets/media_lists.py) against a media
store in a temporary folder. Good rows are stored; each bad row is one line naming list, line and
problem; the label column never becomes metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelloop.core.media import MediaStore
from labelloop.datasets.images import png_bytes
from labelloop.datasets.media_lists import load_media_list
from labelloop.datasets.records import DatasetError
from labelloop.v1 import common_pb2


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(3):
        (folder / f"p{n}.png").write_bytes(png_bytes(np.full((8, 8), 40 * n, dtype=np.uint8)))
    (folder / "notes.png").write_bytes(b"not an image")
    (folder / "big.png").write_bytes(
        png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    )
    return folder


def test_a_csv_list_imports_good_rows_and_names_each_bad_one(tmp_path, photos) -> None:
    store = MediaStore((tmp_path / "media").as_uri(), max_bytes=2048)
    listing = tmp_path / "list.csv"
    absolute = photos / "p2.png"
    listing.write_text(
        "path,item_id,label,camera\n"
        "photos/p0.png,first,cat,nikon\n"  # 2
        "photos/p1.png,,dog,canon\n"  # 3: id from the file's stem
        f"{absolute},third,,\n"  # 4: absolute path
        "photos/missing.png,x,,\n"  # 5
        "photos/notes.png,y,,\n"  # 6
        "photos/big.png,z,,\n"  # 7
        ",w,,\n"  # 8
        "photos/p1.png,first,,\n"  # 9: repeats line 2's id
        "photos/p0.png,a,b\n"  # 10: 3 columns of 4
    )
    got = load_media_list(listing, store)
    assert [r["id"] for r in got.records] == ["first", "p1", "third"]
    assert got.lines == [2, 3, 4]
    assert got.has_label
    assert got.records[0]["metadata"] == {"camera": "nikon"}  # never the label
    assert "metadata" not in got.records[2]  # an empty cell is no metadata
    for record in got.records:
        store.check(common_pb2.MediaRef(**record["media"]))  # the stored copy is the named file
    assert [p.split(": ", 1)[0] for p in got.problems] == [f"{listing}:{n}" for n in (5, 6, 7, 8, 9, 10)]
    assert "no such file" in got.problems[0]
    assert "not an accepted image" in got.problems[1]
    assert "over the limit" in got.problems[2]
    assert "missing or empty 'path'" in got.problems[3]
    assert "duplicate item_id 'first' (first on line 2)" in got.problems[4]
    assert "3 columns, but the header has 4" in got.problems[5]


def test_a_jsonl_list_with_metadata_and_bad_lines(tmp_path, photos) -> None:
    store = MediaStore((tmp_path / "media").as_uri())
    listing = photos / "list.jsonl"
    lines = [
        json.dumps({"path": "p0.png", "item_id": 7, "label": "cat", "shot": {"iso": 100}}),
        "{not json",
        json.dumps(["p1.png"]),
        json.dumps({"item_id": "no-path"}),
        "",
        json.dumps({"path": "p1.png", "metadata": {"site": "north"}}),
    ]
    listing.write_text("\n".join(lines) + "\n")
    got = load_media_list(listing, store)
    assert [r["id"] for r in got.records] == ["7", "p1"]
    assert got.lines == [1, 6]
    assert got.records[0]["metadata"] == {"shot": '{"iso": 100}'}
    assert got.records[1]["metadata"] == {"site": "north"}
    assert [p.split(": ", 1)[0] for p in got.problems] == [f"{listing}:{n}" for n in (2, 3, 4)]
    assert "not valid JSON" in got.problems[0] and "expected a JSON object" in got.problems[1]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("list.csv", "file,item_id\na.png,1\n", "no 'path' column"),
        ("list.txt", "a.png\n", "unknown list format"),
        ("list.csv", "path\n", "no rows"),
    ],
)
def test_a_list_that_cannot_be_read_as_a_whole_is_one_error(tmp_path, name, text, message) -> None:
    listing = tmp_path / name
    listing.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_media_list(listing, MediaStore((tmp_path / "media").as_uri()))
