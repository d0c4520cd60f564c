"""Calls to Triton over gRPC for text classification models: the one Triton client builder.

The inference service classifies and embeds with it, and retraining asks it for the serving
champion's answers on held-out labels (`retraining.deploy.triton_predict`).

Contract with the model repository (labelloop.core.model_repository): input `TEXT` (BYTES,
[batch, 1]), output `PROBS` (FP32, [batch, n_labels]) in the project's label order.
Requests for one batch are sent concurrently with `async_infer` and gathered.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from labelloop.core import metrics
from labelloop.core.errors import DependencyUnavailable, PoisonMessage

PROBE_TEXT = "labelloop probe"
_OUTAGE_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED")


class ModelMissing(Exception):
    """The model is not loaded in Triton (the project has no model yet)."""


@dataclass
class Answer:
    """Probabilities for a list of texts, the model version that answered and, for a model with
    a cascade, which rows its fast stage is unsure of (``escalate``; None when the model has no
    ESCALATE output)."""

    probabilities: np.ndarray
    model_version: int
    escalate: np.ndarray | None = None


class TritonClassifier:
    """Thread-safe client for one Triton server."""

    def __init__(self, url: str, timeout_s: float = 30.0, model_check_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.model_check_s = model_check_s
        self.client = triton.InferenceServerClient(url)
        self._ready: dict[str, tuple[float, bool]] = {}
        self._outputs: dict[str, frozenset[str]] = {}

    def model_ready(self, model_name: str) -> bool:
        """Whether `model_name` is loaded (cached for `model_check_s`, with its outputs).
        DependencyUnavailable if Triton does not answer."""
        now = time.monotonic()
        hit = self._ready.get(model_name)
        if hit and now - hit[0] < self.model_check_s:
            return hit[1]
        try:
            ready = bool(self.client.is_model_ready(model_name, client_timeout=5))
            if ready:
                metadata = self.client.get_model_metadata(model_name, as_json=True, client_timeout=5)
                self._outputs[model_name] = frozenset(o["name"] for o in metadata.get("outputs", []))
        except InferenceServerException as exc:
            raise DependencyUnavailable("triton", str(exc)) from exc
        self._ready[model_name] = (now, ready)
        return ready

    def parameters(self, model_name: str) -> dict[str, str]:
        """The string parameters of `model_name`'s config (e.g. the shared encoder's id)."""
        try:
            config = self.client.get_model_config(model_name, as_json=True, client_timeout=5)
        except InferenceServerException as exc:
            raise DependencyUnavailable("triton", str(exc)) from exc
        return {
            k: str(v.get("string_value", ""))
            for k, v in config.get("config", {}).get("parameters", {}).items()
        }

    def predict(self, model_name: str, texts: Sequence[str], batch_size: int) -> Answer:
        """Probabilities for `texts` (and ESCALATE when the model has it), in chunks of
        `batch_size` sent concurrently.

        Raises ModelMissing when the model is not loaded, DependencyUnavailable when Triton is
        unreachable or fails in a way a retry may cure, PoisonMessage when the model answers
        other texts but rejects these (see `_failure`).
        """
        outputs = ["PROBS"]
        if "ESCALATE" in self._outputs.get(model_name, frozenset()):
            outputs.append("ESCALATE")
        results, version = self._infer(
            model_name,
            [_text_input(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)],
            outputs,
        )
        probs = np.concatenate([r["PROBS"] for r in results], axis=0)
        escalate = (
            np.concatenate([r["ESCALATE"].reshape(-1) for r in results]).astype(bool)
            if "ESCALATE" in outputs
            else None
        )
        return Answer(probs, version, escalate)

    def predict_embedded(
        self, model_name: str, version: int, texts: Sequence[str], embeddings: np.ndarray, batch_size: int
    ) -> np.ndarray:
        """A cascade model's encoder-stage probabilities for `texts` given their `embeddings`,
        asked of exactly `version` (ModelMissing when it no longer serves)."""
        chunks = []
        for i in range(0, len(texts), batch_size):
            emb = np.ascontiguousarray(embeddings[i : i + batch_size], dtype=np.float32)
            tensor = triton.InferInput("EMBEDDING", list(emb.shape), "FP32")
            tensor.set_data_from_numpy(emb)
            chunks.append([*_text_input(texts[i : i + batch_size]), tensor])
        results, _ = self._infer(model_name, chunks, ["PROBS"], version)
        return np.concatenate([r["PROBS"] for r in results], axis=0)

    def embed(self, model_name: str, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Embeddings of `texts` from the shared encoder model `model_name` (EMBEDDING output)."""
        chunks = [_text_input(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        results, _ = self._infer(model_name, chunks, ["EMBEDDING"])
        return np.concatenate([r["EMBEDDING"] for r in results], axis=0)

    def _infer(
        self, model_name: str, chunks: list[list[object]], outputs: list[str], version: int = 0
    ) -> tuple[list[dict[str, np.ndarray]], int]:
        """Send one request per chunk of inputs concurrently; the outputs of each, in order, and
        the newest model version that answered (during a hot swap chunks may meet two)."""
        results: list[object] = [None] * len(chunks)
        done = threading.Semaphore(0)
        started = time.perf_counter()

        def callback(index: int, result: object, error: object) -> None:
            results[index] = error if error is not None else result
            done.release()

        for index, inputs in enumerate(chunks):
            try:
                self.client.async_infer(
                    model_name,
                    inputs,
                    callback=functools.partial(callback, index),
                    model_version=str(version) if version else "",
                    outputs=[triton.InferRequestedOutput(name) for name in outputs],
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as exc:
                callback(index, None, exc)
        for _ in chunks:
            if not done.acquire(timeout=self.timeout_s + 5):
                raise DependencyUnavailable("triton", f"no answer in {self.timeout_s}s")
        answers: list[dict[str, np.ndarray]] = []
        versions: set[int] = set()
        for index, outcome in enumerate(results):
            if isinstance(outcome, InferenceServerException):
                metrics.INFERENCE_REQUESTS.labels(model_name, "error").inc()
                self._ready.pop(model_name, None)
                if not self.model_ready(model_name) or version:
                    raise ModelMissing(model_name)
                raise self._failure(model_name, outcome)
            metrics.INFERENCE_REQUESTS.labels(model_name, "ok").inc()
            metrics.INFERENCE_BATCH_SIZE.labels(model_name).observe(chunks[index][0].shape()[0])  # type: ignore[attr-defined]
            answers.append({name: outcome.as_numpy(name) for name in outputs})  # type: ignore[attr-defined]
            versions.add(int(outcome.get_response().model_version or 0))  # type: ignore[attr-defined]
        metrics.INFERENCE_SECONDS.labels(model_name).observe(time.perf_counter() - started)
        return answers, max(versions) if versions else 0

    def _failure(self, model_name: str, error: InferenceServerException) -> Exception:
        """What a failed request of a loaded model means. Triton unreachable or overloaded
        (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED), or the model failing on a probe
        text too: an outage (DependencyUnavailable: pause and retry). The model answering the
        probe: the input is the problem, a PoisonMessage; the stream loop then retries the batch
        one item at a time and dead-letters only the item that fails again."""
        status = str(error.status() or "")
        if any(code in status for code in _OUTAGE_STATUSES):
            return DependencyUnavailable("triton", f"infer on {model_name} failed: {error}")
        if not self._probe(model_name):
            return DependencyUnavailable("triton", f"infer on {model_name} failed (probe too): {error}")
        return PoisonMessage("InferenceError", f"model {model_name} rejected the input: {error.message()}")

    def _probe(self, model_name: str) -> bool:
        """True when the model answers a plain text."""
        data = np.array([[PROBE_TEXT.encode()]], dtype=np.object_)
        tensor = triton.InferInput("TEXT", list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        try:
            self.client.infer(
                model_name,
                [tensor],
                outputs=[triton.InferRequestedOutput("PROBS")],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException:
            return False
        return True

    def close(self) -> None:
        self.client.close()


def _text_input(texts: Sequence[str]) -> list[object]:
    data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
    tensor = triton.InferInput("TEXT", list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return [tensor]
