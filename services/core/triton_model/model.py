"""Triton python-backend model for Labelloop classifiers (copied into every model version).

Layout it serves (written by `labelloop.core.model_repository`):
    <repo>/<model>/config.pbtxt           input TEXT (TYPE_STRING, [1]), output PROBS (TYPE_FP32, [n_classes])
    <repo>/<model>/<version>/model.py     this file
    <repo>/<model>/<version>/labels.json  {"format": 1, "family": ..., "labels": [...], "artifacts": {...}}
    <repo>/<model>/<version>/<artifacts>  what the family needs, e.g. pipeline.joblib

`execute` gathers the texts of every request Triton hands it into ONE `predict_proba` call and
splits the rows back per request, so Triton's dynamic batching turns into one model call.
PROBS columns follow `labels` in labels.json. The model family (labels.json "family") picks the
predictor from `FAMILIES`; a new family adds a loader there and keeps this layout.
This file runs inside Triton's python stub: it imports only numpy, the family's own libraries
and `triton_python_backend_utils`, never Labelloop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import triton_python_backend_utils as pb_utils


class Predictor(Protocol):
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, one row per text, columns in labels.json order."""
        ...


class SklearnPredictor:
    """Family "sklearn": a scikit-learn pipeline (text -> predict_proba) saved with joblib."""

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        import joblib

        self.pipeline = joblib.load(version_dir / meta["artifacts"]["pipeline"])
        classes = [str(c) for c in self.pipeline.classes_]
        labels = [str(label) for label in meta["labels"]]
        unknown = sorted(set(classes) - set(labels))
        if unknown:
            raise ValueError(f"pipeline classes {unknown} are not in labels.json labels {labels}")
        # A label the pipeline never saw in training gets probability 0.
        self.columns = [classes.index(label) if label in classes else -1 for label in labels]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        probs = np.asarray(self.pipeline.predict_proba(texts), dtype=np.float32)
        out = np.zeros((probs.shape[0], len(self.columns)), dtype=np.float32)
        for j, i in enumerate(self.columns):
            if i >= 0:
                out[:, j] = probs[:, i]
        return out


class MinilmPredictor:
    """Family "minilm-head": a frozen sentence encoder (ONNX on onnxruntime) + a logistic head.

    The version directory carries its own copy of Labelloop's ``core/encoder_runtime.py``
    (artifact "runtime"), loaded here by path under a per-version module name, so the served
    embeddings come from the very code the head was trained with.
    """

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        import importlib.util
        import sys

        path = version_dir / meta["artifacts"]["runtime"]
        module_name = f"_labelloop_encoder_runtime_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the encoder runtime {path}")
        runtime = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = runtime
        spec.loader.exec_module(runtime)
        self.classifier = runtime.EncoderClassifier(version_dir, meta)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.classifier.predict_proba(texts), dtype=np.float32)


class ImagePredictor:
    """Family "image-lr": the TEXT input carries each item's media URI; the version's copy of
    Labelloop's ``core/image_features.py`` (artifact "runtime") reads the pixels from the media
    root recorded in labels.json and runs the saved pipeline (artifact "pipeline")."""

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        runtime = _load_runtime(version_dir / meta["artifacts"]["runtime"], "_labelloop_image_features")
        self.classifier = runtime.ImageClassifier(version_dir, meta)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.classifier.predict_proba(texts), dtype=np.float32)


def _load_runtime(path: Path, prefix: str) -> Any:
    """Import a runtime module a version carries, by path, under a per-version module name."""
    import importlib.util
    import sys

    module_name = f"{prefix}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the runtime module {path}")
    runtime = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = runtime
    spec.loader.exec_module(runtime)
    return runtime


FAMILIES: dict[str, Callable[[Path, dict[str, Any]], Predictor]] = {
    "sklearn": SklearnPredictor,
    "minilm-head": MinilmPredictor,
    "image-lr": ImagePredictor,
}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _artifact_sha256(path: Path) -> str:
    """A file's SHA-256, or a directory's (as labelloop.core.model_repository.tree_sha256)."""
    if not path.is_dir():
        return _file_sha256(path)
    lines = sorted(
        f"{p.relative_to(path).as_posix()}\t{_file_sha256(p)}\n" for p in path.rglob("*") if p.is_file()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def verify_artifacts(version_dir: Path, meta: dict[str, Any]) -> None:
    """Refuse (ValueError) to load a version whose artifacts do not match the SHA-256 recorded in
    labels.json when it was written: nothing is unpickled or imported before this passes."""
    recorded = meta.get("sha256") or {}
    for name in sorted(set((meta.get("artifacts") or {}).values())):
        expected = recorded.get(name)
        if not expected:
            raise ValueError(f"{version_dir}/{name}: no SHA-256 recorded in labels.json; refusing to load it")
        actual = _artifact_sha256(version_dir / name)
        if actual != expected:
            raise ValueError(
                f"{version_dir}/{name}: SHA-256 {actual} differs from the recorded {expected}; refusing to load it"
            )


def _texts(request: Any) -> list[str]:
    values = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


class TritonPythonModel:
    """Entry point Triton's python backend instantiates once per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        meta = json.loads((version_dir / "labels.json").read_text())
        family = meta.get("family")
        if family not in FAMILIES:
            raise ValueError(
                f"unknown model family {family!r} in {version_dir}/labels.json; known: {sorted(FAMILIES)}"
            )
        self.labels = list(meta["labels"])
        verify_artifacts(version_dir, meta)
        self.predictor = FAMILIES[family](version_dir, meta)

    def execute(self, requests: list[Any]) -> list[Any]:
        texts: list[str] = []
        counts: list[int | None] = []  # None: this request's input could not be read
        errors: dict[int, str] = {}
        for i, request in enumerate(requests):
            try:
                batch = _texts(request)
            except Exception as error:  # one bad request must not fail the others
                errors[i] = f"bad TEXT input: {error}"
                counts.append(None)
                continue
            texts.extend(batch)
            counts.append(len(batch))
        try:
            probs = self.predictor.predict_proba(texts).astype(np.float32) if texts else None
        except Exception as error:
            failure = pb_utils.TritonError(f"predict_proba failed: {error}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=failure) for _ in requests]
        responses = []
        start = 0
        for i, count in enumerate(counts):
            if count is None:
                bad_input = pb_utils.TritonError(errors[i])
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=bad_input))
                continue
            rows = (
                probs[start : start + count]
                if probs is not None
                else np.zeros((0, len(self.labels)), np.float32)
            )
            start += count
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PROBS", rows)]))
        return responses

    def finalize(self) -> None:
        self.predictor = None  # type: ignore[assignment]
