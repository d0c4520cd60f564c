"""Triton python-backend model for Labelloop classifiers (copied into every model version).

Layout it serves (written by `labelloop.core.model_repository`):
    <repo>/<model>/config.pbtxt           classifiers: input TEXT (TYPE_STRING, [1]) and optional
                                          EMBEDDING (TYPE_FP32, [-1]); outputs PROBS (TYPE_FP32,
                                          [n_classes]) and ESCALATE (TYPE_BOOL, [1]);
                                          the shared encoder: TEXT in, EMBEDDING (TYPE_FP32, [dim]) out
    <repo>/<model>/<version>/model.py     this file
    <repo>/<model>/<version>/labels.json  {"format": 1, "family": ..., "labels": [...], "artifacts": {...}}
    <repo>/<model>/<version>/<artifacts>  what the family needs, e.g. pipeline.joblib

`execute` gathers the texts of every request Triton hands it into ONE `predict_proba` call and
splits the rows back per request, so Triton's dynamic batching turns into one model call.
PROBS columns follow `labels` in labels.json. ESCALATE marks the rows a cascade's fast stage
is unsure of (always False for other families); a request that also carries EMBEDDING gets the
cascade's encoder-stage answer for those texts. The model family (labels.json "family") picks the
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


class MultiLabelPredictor:
    """Family "sklearn-multilabel": a scikit-learn pipeline (text -> one-vs-rest classifier fit
    on a label indicator matrix) saved with joblib. Its `predict_proba` columns are the labels of
    labels.json in order, each the independent probability that the label applies (they do not
    sum to 1)."""

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        import joblib

        self.pipeline = joblib.load(version_dir / meta["artifacts"]["pipeline"])
        self.width = len(meta["labels"])

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        probs = np.asarray(self.pipeline.predict_proba(texts), dtype=np.float32)
        if probs.ndim != 2 or probs.shape[1] != self.width:
            raise ValueError(f"pipeline gives {probs.shape} probabilities for {self.width} labels")
        return probs


class MinilmPredictor:
    """Family "minilm-head": a frozen sentence encoder (ONNX on onnxruntime) + a logistic head.

    The version directory carries its own copy of Labelloop's ``core/encoder_runtime.py``
    (artifact "runtime"), loaded here by path under a per-version module name, so the served
    embeddings come from the very code the head was trained with.
    """

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        runtime = _load_runtime(version_dir / meta["artifacts"]["runtime"])
        self.classifier = runtime.EncoderClassifier(version_dir, meta)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.classifier.predict_proba(texts), dtype=np.float32)


class ImagePredictor:
    """Families "image-lr" and "image-svm": the TEXT input carries each item's media URI; the version's copy of
    Labelloop's ``core/image_features.py`` (artifact "runtime") reads the pixels from the media
    root recorded in labels.json and runs the saved pipeline (artifact "pipeline")."""

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        runtime = _load_runtime(version_dir / meta["artifacts"]["runtime"])
        self.classifier = runtime.ImageClassifier(version_dir, meta)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.classifier.predict_proba(texts), dtype=np.float32)


class EncoderPredictor:
    """Family "minilm-encoder": the shared sentence encoder alone, TEXT -> EMBEDDING (unit rows).

    One such model serves every project: the inference service asks it for the embeddings of
    the items a fast model is unsure of and keeps them (``labelloop.core.embeddings``), so each
    item is encoded once. Texts of all the requests of one call are sorted by length and run in
    batches bounded by ``metadata.batch_size`` texts and ``metadata.batch_tokens`` padded tokens.
    """

    output = "EMBEDDING"

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        runtime = _load_runtime(version_dir / meta["artifacts"]["runtime"])
        metadata = meta.get("metadata", {})
        tokens = metadata.get("batch_tokens")
        self.encoder = runtime.SentenceEncoder(
            version_dir / meta["artifacts"]["encoder"],
            version_dir / meta["artifacts"]["tokenizer"],
            max_seq_length=int(metadata["max_seq_length"]),
            batch_size=int(metadata["batch_size"]),
            batch_tokens=int(tokens) if tokens else None,
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode(texts), dtype=np.float32)


class CascadePredictor:
    """Family "cascade": a fast scikit-learn pipeline first, an encoder head for what it is unsure of.

    TEXT alone: the fast pipeline's probabilities, and ESCALATE for the rows whose top
    probability is below ``metadata.bar`` (the caller then sends those texts again with their
    EMBEDDING, from the shared encoder model or the embedding store). TEXT + EMBEDDING: the
    head's probabilities on the embeddings (``metadata.encoder_id`` names the encoder they must
    come from), combined with the fast pipeline's on the same texts as ``metadata.combine`` says
    (the runtime's ``combine_stages``; absent: the head's alone, as versions written before it).
    Columns of both follow labels.json.
    """

    def __init__(self, version_dir: Path, meta: dict[str, Any]) -> None:
        self.fast = SklearnPredictor(version_dir, meta)
        runtime = _load_runtime(version_dir / meta["artifacts"]["runtime"])
        self.head = runtime.LinearHead.load(version_dir / meta["artifacts"]["head"])
        if self.head.labels != [str(label) for label in meta["labels"]]:
            raise ValueError(f"head labels {self.head.labels} differ from labels.json {meta['labels']}")
        self.bar = float(meta["metadata"]["bar"])
        # A version that names how its stages combine carries a runtime that knows how.
        self.combine = str(meta["metadata"].get("combine", "replace"))
        self.runtime = runtime

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.fast.predict_proba(texts)

    def escalate(self, probs: np.ndarray) -> np.ndarray:
        return probs.max(axis=1) < self.bar if probs.shape[0] else np.zeros((0,), dtype=bool)

    def predict_embedded(self, texts: list[str], embeddings: np.ndarray) -> np.ndarray:
        if embeddings.shape[0] != len(texts):
            raise ValueError(f"{embeddings.shape[0]} embeddings for {len(texts)} texts")
        head = self.head.predict_proba(embeddings)
        if self.combine != "replace":
            head = self.runtime.combine_stages(self.fast.predict_proba(texts), head, self.combine)
        return np.asarray(head, dtype=np.float32)


def _load_runtime(path: Path) -> Any:
    """Import a version's copy of ``encoder_runtime.py`` by path, under a per-version name."""
    import importlib.util
    import sys

    module_name = f"_labelloop_encoder_runtime_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the encoder runtime {path}")
    runtime = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = runtime
    spec.loader.exec_module(runtime)
    return runtime


FAMILIES: dict[str, Callable[[Path, dict[str, Any]], Predictor]] = {
    "sklearn": SklearnPredictor,
    "sklearn-multilabel": MultiLabelPredictor,
    "minilm-head": MinilmPredictor,
    "minilm-encoder": EncoderPredictor,
    "cascade": CascadePredictor,
    "image-lr": ImagePredictor,
    "image-svm": ImagePredictor,
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


def _error(message: str) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


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
        self.output = str(getattr(self.predictor, "output", "PROBS"))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        plain: list[int] = []  # requests with TEXT only: answered together, in one call
        for i, request in enumerate(requests):
            embedding = pb_utils.get_input_tensor_by_name(request, "EMBEDDING")
            if embedding is None:
                plain.append(i)
            else:  # a cascade's second stage: rare, small, answered one request at a time
                responses[i] = self._embedded(request, embedding.as_numpy())
        texts: list[str] = []
        counts: dict[int, int] = {}
        for i in plain:
            try:
                batch = _texts(requests[i])
            except Exception as error:  # one bad request must not fail the others
                responses[i] = _error(f"bad TEXT input: {error}")
                continue
            texts.extend(batch)
            counts[i] = len(batch)
        try:
            rows = self.predictor.predict_proba(texts).astype(np.float32) if texts else None
            escalate = self._escalate(rows)
        except Exception as error:
            for i in counts:
                responses[i] = _error(f"predict_proba failed: {error}")
            return responses
        start = 0
        for i, count in counts.items():
            part = (
                rows[start : start + count]
                if rows is not None
                else np.zeros((0, len(self.labels)), np.float32)
            )
            tensors = [pb_utils.Tensor(self.output, part)]
            if escalate is not None:
                tensors.append(pb_utils.Tensor("ESCALATE", escalate[start : start + count].reshape(-1, 1)))
            start += count
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def _escalate(self, rows: np.ndarray | None) -> np.ndarray | None:
        """ESCALATE per row for a classifier (what a cascade's fast stage is unsure of; all
        False for other families); None for the encoder model, which has no such output."""
        if self.output != "PROBS":
            return None
        if rows is None:
            return np.zeros((0,), dtype=bool)
        decide = getattr(self.predictor, "escalate", None)
        return np.asarray(decide(rows), dtype=bool) if decide else np.zeros((rows.shape[0],), dtype=bool)

    def _embedded(self, request: Any, embeddings: np.ndarray) -> Any:
        answer = getattr(self.predictor, "predict_embedded", None)
        if answer is None:
            return _error("this model version takes no EMBEDDING input (not a cascade)")
        try:
            texts = _texts(request)
            probs = np.asarray(answer(texts, np.asarray(embeddings, dtype=np.float32)), dtype=np.float32)
        except Exception as error:
            return _error(f"predict_embedded failed: {error}")
        escalate = np.zeros((probs.shape[0], 1), dtype=bool)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("PROBS", probs), pb_utils.Tensor("ESCALATE", escalate)]
        )

    def finalize(self) -> None:
        self.predictor = None  # type: ignore[assignment]
