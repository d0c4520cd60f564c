"""Image datasets: the built-in Fashion-MNIST (Debian package) and a user's folder of images."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from labelloop.core.media import MediaStore
from labelloop.datasets import DatasetError, DatasetNotFetchedError, content_of, load
from labelloop.datasets.images import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_SIZE,
    fashion_mnist_dir,
    load_fashion_mnist_arrays,
    load_image_folder,
    png_bytes,
)


@pytest.fixture
def store(tmp_path):
    return MediaStore(str(tmp_path / "media"), max_bytes=2048)


installed = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed: run `make setup` (Debian package dataset-fashion-mnist)",
)


@installed
def test_fashion_mnist_has_70000_images_in_10_balanced_classes_and_ids_without_labels():
    data = load_fashion_mnist_arrays()
    assert data.images.shape == (FASHION_MNIST_SIZE, 28, 28) and data.images.dtype == np.uint8
    assert len(set(data.ids)) == FASHION_MNIST_SIZE
    assert Counter(data.labels) == dict.fromkeys(FASHION_MNIST_CLASSES, 7_000)
    assert all(i.startswith(("train-", "test-")) for i in data.ids)
    assert not any(label in i for i in data.ids for label in FASHION_MNIST_CLASSES)
    first = Counter(data.labels[:500])
    assert len(first) == 10 and max(first.values()) < 100, "the stream is class-mixed"
    assert load_fashion_mnist_arrays().ids[:50] == data.ids[:50], "the order is deterministic"


@installed
def test_fashion_mnist_records_write_only_the_images_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELLOOP_MEDIA_ROOT", (tmp_path / "media").as_uri())
    records = load("fashion-mnist", limit=30)
    assert len(records) == 30
    files = list((tmp_path / "media").rglob("*.png"))
    assert 0 < len(files) <= 30
    store = MediaStore((tmp_path / "media").as_uri())
    arrays = load_fashion_mnist_arrays()
    for n, r in enumerate(records):
        assert r["id"] == arrays.ids[n] and r["label"] == arrays.labels[n] and r["text"] == ""
        content = content_of(r)
        assert content.WhichOneof("body") == "media"
        store.check(content.media)
        handle, _ = store.open(content.media.uri)
        with handle:
            pixels = np.asarray(Image.open(io.BytesIO(handle.read())))
        assert np.array_equal(pixels, arrays.images[n])


def test_fashion_mnist_missing_says_to_run_make_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELLOOP_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFetchedError, match="make setup"):
        load_fashion_mnist_arrays()


def _image(value: int) -> bytes:
    return png_bytes(np.full((8, 8), value, dtype=np.uint8))


def test_an_image_folder_with_one_subfolder_per_label(tmp_path, store):
    folder = tmp_path / "shoes"
    for label, names in {"boot": ["a", "b"], "sandal": ["c"]}.items():
        (folder / label).mkdir(parents=True)
        for n, name in enumerate(names):
            (folder / label / f"{name}.png").write_bytes(_image(10 * n + len(label)))
    (folder / "loose.png").write_bytes(_image(200))
    (folder / ".hidden").write_text("ignored")
    records = load_image_folder(folder, store)
    assert [(r["id"], r["label"]) for r in records] == [
        ("a", "boot"),
        ("b", "boot"),
        ("loose", ""),
        ("c", "sandal"),
    ]
    for r in records:
        store.check(content_of(r).media)
    assert load_image_folder(folder, store) == records, "importing again is idempotent"


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("notes.png", b"plain text, not an image", "not an accepted image"),
        ("big.png", None, "over the limit"),
    ],
)
def test_a_bad_file_in_a_folder_is_an_error_naming_it(tmp_path, store, name, data, problem):
    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "ok.png").write_bytes(_image(1))
    if data is None:
        data = png_bytes(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))
    (folder / "cat" / name).write_bytes(data)
    with pytest.raises(DatasetError, match=problem) as caught:
        load_image_folder(folder, store)
    assert name in str(caught.value)


def test_the_same_stem_under_two_labels_is_an_error(tmp_path, store):
    for label in ("a", "b"):
        (tmp_path / "f" / label).mkdir(parents=True)
        (tmp_path / "f" / label / "x.png").write_bytes(_image(3))
    with pytest.raises(DatasetError, match="duplicate id 'x'"):
        load_image_folder(tmp_path / "f", store)
