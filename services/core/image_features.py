"""Pixel features of images named by URI: the shared runtime of the "image-lr" model family.

The retraining service computes training features with it, and every version of an image model
carries a copy of this file (artifact "runtime") that ``core/triton_model/model.py`` loads by
path inside Triton, so the served features come from the very code the model was trained with.
It therefore imports only numpy, Pillow, fsspec and joblib, never Labelloop.

The model's input is the item's media URI (the TEXT input of the Triton model carries it, as it
carries text for text models). An image is read from the media root the model was trained
against (labels.json ``media_root``; a URI outside it is refused), converted to 8-bit grayscale,
resized to ``side`` x ``side`` pixels (28 by default: Fashion-MNIST's size) and scaled to [0, 1];
the features are those pixels, flattened. The classifier on top (a scikit-learn pipeline of
standardisation, PCA and logistic regression) is saved with joblib as ``pipeline.joblib``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

DEFAULT_SIDE = 28


def _under_root(uri: str, root: str) -> str:
    """The file-system path of ``uri``; ValueError when it is not under ``root``."""
    fs, root_path = fsspec.core.url_to_fs(root)
    path = fs._strip_protocol(uri)
    if isinstance(fs, LocalFileSystem):
        root_path, path = os.path.realpath(root_path), os.path.realpath(path)
        scheme_ok = uri.startswith("file://")
    else:
        scheme_ok = "://" in uri
    if not scheme_ok or not path.startswith(root_path.rstrip("/") + "/"):
        raise ValueError(f"{uri!r} is not under the media root {root}")
    return str(path)


def read_pixels(uri: str, root: str, side: int = DEFAULT_SIDE) -> np.ndarray:
    """One image as ``side * side`` grayscale values in [0, 1] (float32)."""
    fs, _ = fsspec.core.url_to_fs(root)
    with fs.open(_under_root(uri, root), "rb") as f:
        data = f.read()
    with Image.open(io.BytesIO(data)) as image:
        gray = image.convert("L")
        if gray.size != (side, side):
            gray = gray.resize((side, side), Image.Resampling.BILINEAR)
        return np.asarray(gray, dtype=np.float32).reshape(-1) / 255.0


def pixel_features(uris: Sequence[str], root: str, side: int = DEFAULT_SIDE) -> np.ndarray:
    """The features of many images: shape ``(len(uris), side * side)``, float32."""
    if not uris:
        return np.zeros((0, side * side), dtype=np.float32)
    return np.stack([read_pixels(u, root, side) for u in uris])


class ImageClassifier:
    """A served image model: reads each URI's pixels, runs the saved pipeline on them.

    ``meta`` is the version's labels.json: ``labels`` (output columns), ``artifacts.pipeline``,
    and ``metadata.media_root`` / ``metadata.side``.
    """

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        import joblib

        self.root = str(meta["metadata"]["media_root"])
        self.side = int(meta["metadata"].get("side", DEFAULT_SIDE))
        self.pipeline = joblib.load(Path(version_dir) / meta["artifacts"]["pipeline"])
        classes = [str(c) for c in self.pipeline.classes_]
        self.columns = [
            classes.index(str(label)) if str(label) in classes else -1 for label in meta["labels"]
        ]

    def predict_proba(self, uris: Sequence[str]) -> np.ndarray:
        probs = self.pipeline.predict_proba(pixel_features(uris, self.root, self.side))
        out = np.zeros((probs.shape[0], len(self.columns)), dtype=np.float32)
        for j, i in enumerate(self.columns):
            if i >= 0:
                out[:, j] = probs[:, i]
        return out
