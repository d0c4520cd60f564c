"""Triton from the local stack serving a "minilm-head" version (sentence encoder + head, no torch)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from labelloop.core import model_repository as repo
from labelloop.datasets import load
from labelloop.retraining.encoder import MINILM_FAMILY
from labelloop.stack import LocalStack


@pytest.fixture
def model_name(stack: LocalStack) -> Iterator[str]:
    """A model name unique to this test; the model is unloaded afterwards (frees its stub process)."""
    name = f"test-minilm-{uuid.uuid4().hex[:8]}"
    yield name
    triton = grpcclient.InferenceServerClient(stack.triton_grpc_url)
    try:
        triton.unload_model(name)
    finally:
        triton.close()


def test_served_probabilities_equal_in_process_ones(stack: LocalStack, model_name: str) -> None:
    records = load("bbcnews", limit=100)
    texts = [r["text"][:500] for r in records]  # headline and first lines: short encoder calls
    labels = [r["label"] for r in records]
    label_set = ["tech", *sorted(set(labels) - {"tech"}), "never-seen"]
    model = MINILM_FAMILY.fit(texts[:36], labels[:36], label_set)
    model.write_version(stack.model_repository, model_name, 1)
    assert repo.load_and_wait(stack.triton_grpc_url, model_name, timeout=120) == 1

    # One request of 64 texts no other test embedded in this process, so Triton and the
    # in-process encoder run them in the same batches (INT8 quantises activations per batch).
    queries = [f"{t} (triton)" for t in texts[36:100]]
    client = grpcclient.InferenceServerClient(stack.triton_grpc_url)
    try:
        text = grpcclient.InferInput("TEXT", [len(queries), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode()] for t in queries], dtype=np.object_))
        result = client.infer(model_name, [text], client_timeout=120)
    finally:
        client.close()
    served = result.as_numpy("PROBS")

    assert served is not None and served.shape == (64, len(label_set)) and served.dtype == np.float32
    assert result.get_response().model_version == "1"
    np.testing.assert_allclose(served, model.predict_proba(queries), atol=1e-4)
    assert not served[:, -1].any()
    accuracy = np.mean([label_set[i] == y for i, y in zip(served.argmax(axis=1), labels[36:], strict=True)])
    assert accuracy >= 0.8, accuracy
