"""Image datasets: the built-in Fashion-MNIST and a user's folder of images, as media records.

An image record is a :class:`~labelloop.datasets.records.Record` whose ``text`` is empty and whose
``media`` names a file in the media store (:class:`labelloop.core.media.MediaStore`): the image is
written (or copied) there once, content-addressed, and items carry only its reference.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (``make setup`` installs it,
``deploy/local/setup.d/25-fashion-mnist.sh``): 70,000 28x28 grayscale images in 10 classes, read
from the four gzipped idx files in ``/usr/share/datasets/fashion-mnist/`` (or
``$LABELLOOP_FASHION_MNIST_DIR``). Decisions:

- train (60,000) and test (10,000) are one stream, as for 20 Newsgroups; the id is
  ``train-00042`` / ``test-00042`` (the row in its file), so an id says nothing of the label;
- the stream order is :func:`~labelloop.datasets.records.stream_order` of the ids;
- labels are the class names of the dataset's documentation, lower case with ``-`` for spaces and
  ``/`` (``t-shirt-top``, ``trouser``, ... ``ankle-boot``);
- each image is stored as an 8-bit grayscale PNG; only the items asked for (``limit``) are written.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from labelloop.core.media import DEFAULT_MEDIA_ROOT, MediaStore, sniff_content_type
from labelloop.datasets.records import DatasetError, DatasetNotFetchedError, Record, stream_order

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SIZE",
    "FashionMnist",
    "fashion_mnist_dir",
    "load_fashion_mnist",
    "load_fashion_mnist_arrays",
    "load_image_folder",
    "media_store",
    "png_bytes",
]

#: Environment variable naming the directory of the four idx files (default: the Debian path).
FASHION_MNIST_DIR_ENV = "LABELLOOP_FASHION_MNIST_DIR"
#: Environment variable naming the media root (the same one the services read).
MEDIA_ROOT_ENV = "LABELLOOP_MEDIA_ROOT"
FASHION_MNIST_SIZE = 70_000
#: The class names, in the order of the dataset's numeric labels 0-9.
FASHION_MNIST_CLASSES = (
    "t-shirt-top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
_SPLITS = (("train", "train"), ("test", "t10k"))
_IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def fashion_mnist_dir() -> Path:
    """``$LABELLOOP_FASHION_MNIST_DIR`` when set, else Debian's ``/usr/share/datasets/fashion-mnist``."""
    return Path(os.environ.get(FASHION_MNIST_DIR_ENV) or "/usr/share/datasets/fashion-mnist")


def media_store() -> MediaStore:
    """The media store of ``$LABELLOOP_MEDIA_ROOT`` (default ``<repo>/.cache/media``)."""
    return MediaStore(os.environ.get(MEDIA_ROOT_ENV) or DEFAULT_MEDIA_ROOT)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    if not path.is_file():
        raise DatasetNotFetchedError(
            f"the built-in dataset 'fashion-mnist' is not in {path.parent}: run `make setup` "
            f"(it installs the Debian package dataset-fashion-mnist), or point "
            f"${FASHION_MNIST_DIR_ENV} at a directory holding its four idx files"
        )
    raw = gzip.decompress(path.read_bytes())
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(f"{path}: not an idx file of the expected kind (magic {found:#010x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: {data.size} values, the header says {shape}")
    return data.reshape(shape)


@dataclass(frozen=True)
class FashionMnist:
    """The whole dataset in stream order: ``ids[i]``, ``images[i]`` (28x28 uint8), ``labels[i]``."""

    ids: list[str]
    images: np.ndarray
    labels: list[str]


def load_fashion_mnist_arrays() -> FashionMnist:
    """All 70,000 images with their ids and class names, in stream order (no file is written)."""
    root = fashion_mnist_dir()
    ids: list[str] = []
    images: list[np.ndarray] = []
    labels: list[str] = []
    for split, stem in _SPLITS:
        pixels = _read_idx(root / f"{stem}-images-idx3-ubyte.gz", _IMAGE_MAGIC)
        classes = _read_idx(root / f"{stem}-labels-idx1-ubyte.gz", _LABEL_MAGIC)
        if len(pixels) != len(classes):
            raise DatasetError(f"{root}: {len(pixels)} {split} images but {len(classes)} labels")
        ids += [f"{split}-{row:05d}" for row in range(len(pixels))]
        images.append(pixels)
        labels += [FASHION_MNIST_CLASSES[c] for c in classes]
    position = {item_id: n for n, item_id in enumerate(ids)}
    keys: list[Record] = [{"id": item_id, "text": "", "label": ""} for item_id in ids]
    order = [position[r["id"]] for r in stream_order(keys)]
    all_images = np.concatenate(images)
    return FashionMnist([ids[n] for n in order], all_images[order], [labels[n] for n in order])


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grayscale (2-D) or RGB (3-D) array as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG")
    return out.getvalue()


def _media_record(item_id: str, label: str, data: bytes, store: MediaStore) -> Record:
    ref = store.put(data)
    return {
        "id": item_id,
        "text": "",
        "label": label,
        "media": {
            "uri": ref.uri,
            "content_type": ref.content_type,
            "size_bytes": ref.size_bytes,
            "sha256": ref.sha256,
        },
    }


def load_fashion_mnist(limit: int | None = None, store: MediaStore | None = None) -> list[Record]:
    """The first ``limit`` (default all) Fashion-MNIST items in stream order, as image records.

    Each image is written to ``store`` (default :func:`media_store`) as a PNG, once.
    """
    data = load_fashion_mnist_arrays()
    store = store or media_store()
    n = len(data.ids) if limit is None else min(limit, len(data.ids))
    return [_media_record(data.ids[i], data.labels[i], png_bytes(data.images[i]), store) for i in range(n)]


def load_image_folder(folder: str | Path, store: MediaStore | None = None) -> list[Record]:
    """Copy a folder of images into the media store and return one record per image, sorted by path.

    Layout: images directly in ``folder`` are unlabeled; images in a subfolder are labeled with
    the subfolder's name (one subfolder per label, for benchmark use). Deeper folders and hidden
    files are ignored. The id is the file's stem, so it carries no label (the same stem twice is
    an error naming both paths). Raises :class:`DatasetError`
    naming the file for a file that is not an accepted image (by its bytes) or is over the store's
    ``max_bytes``; nothing is stored for the files after it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    store = store or media_store()
    found: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            found.append((entry, ""))
        elif entry.is_dir():
            found += [
                (p, entry.name) for p in sorted(entry.iterdir()) if p.is_file() and not p.name.startswith(".")
            ]
    records: list[Record] = []
    first: dict[str, Path] = {}
    for path, label in found:
        item_id = path.stem
        if item_id in first:
            raise DatasetError(f"{path}: duplicate id {item_id!r} (also {first[item_id]})")
        first[item_id] = path
        data = path.read_bytes()
        if len(data) > store.max_bytes:
            raise DatasetError(f"{path}: {len(data)} bytes, over the limit of {store.max_bytes}")
        if sniff_content_type(data[:16]) is None:
            raise DatasetError(f"{path}: not an accepted image (PNG, JPEG, GIF, WebP or BMP by its bytes)")
        records.append(_media_record(item_id, label, data, store))
    if not records:
        raise DatasetError(f"{folder}: no images")
    return records
