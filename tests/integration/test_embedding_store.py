"""Each item is encoded at most once: across retrainings, a restart of retraining, and the serving
cascade (inference) writing what training then reads. Real Redis and Triton of the test stack;
the counts are encoder calls (texts run through the graph) and raw Redis keys."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
import tritonclient.grpc as grpcclient

from labelloop.core import model_repository as repo
from labelloop.core import redis_store
from labelloop.core.embeddings import EmbeddingStore
from labelloop.core.triton_client import TritonClassifier
from labelloop.datasets import load
from labelloop.inference.cascade import EncoderStage
from labelloop.retraining.cascade import CascadeFamily
from labelloop.retraining.encoder import MINILM_FAMILY, ensure_encoder_model, shared_encoder
from labelloop.stack import LocalStack

# One training in a fresh process (a restart): prints how many texts it ran through the encoder.
TRAIN_IN_A_NEW_PROCESS = """
import json, sys
import redis
from labelloop.core.embeddings import EmbeddingStore
from labelloop.retraining.encoder import MINILM_FAMILY, shared_encoder
url, password, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
texts, labels = json.loads(sys.argv[4]), json.loads(sys.argv[5])
encoder = shared_encoder()
store = EmbeddingStore(redis.Redis.from_url(url, password=password), prefix, encoder.encoder_id, encoder.encoder.dim)
MINILM_FAMILY.with_store(store).fit(texts, labels, sorted(set(labels)))
print(json.dumps({"encoded": encoder.encoded, "stored": store.writes}))
"""


@pytest.fixture(scope="module")
def bbc() -> tuple[list[str], list[str]]:
    records = load("bbcnews", limit=80)
    tag = uuid.uuid4().hex[:8]  # texts no other test (or earlier run) has stored
    return [f"{r['text'][:400]} [{tag}]" for r in records], [r["label"] for r in records]


@pytest.fixture
def client(stack: LocalStack, redis_prefix: str) -> Iterator[redis.Redis]:
    c = redis_store.connect(stack.redis_url, stack.redis_password)
    yield c
    keys = list(c.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        c.delete(*keys)
    c.close()


def _stored(client: redis.Redis, prefix: str) -> int:
    return len(list(client.scan_iter(match=f"{prefix}:embedding:*", count=1000)))


def test_an_item_is_encoded_once_across_a_retrain_and_a_restart(
    stack: LocalStack, client: redis.Redis, redis_prefix: str, bbc: tuple[list[str], list[str]]
) -> None:
    texts, labels = bbc
    encoder = shared_encoder()
    store = EmbeddingStore(client, redis_prefix, encoder.encoder_id, encoder.encoder.dim)
    family = MINILM_FAMILY.with_store(store)
    before = encoder.encoded

    first = family.fit(texts[:40], labels[:40], sorted(set(labels)))
    assert encoder.encoded - before == 40 and _stored(client, redis_prefix) == 40
    # A retraining with five more labels encodes the five new texts only.
    family.fit(texts[:45], labels[:45], sorted(set(labels)))
    assert encoder.encoded - before == 45 and _stored(client, redis_prefix) == 45

    # A restart: a new process, an empty in-process cache, the same store: nothing re-encoded.
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            TRAIN_IN_A_NEW_PROCESS,
            stack.redis_url,
            stack.redis_password,
            redis_prefix,
            json.dumps(texts[:45]),
            json.dumps(labels[:45]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"encoded": 0, "stored": 0}
    assert _stored(client, redis_prefix) == 45

    # The stored embeddings are the ones the model was trained on.
    stored, missing = store.get_many(texts[:40])
    assert missing == []
    np.testing.assert_array_equal(stored, encoder.embed(texts[:40]))
    np.testing.assert_allclose(first.predict_proba(texts[:3]).sum(axis=1), 1.0, atol=1e-9)


def test_the_serving_cascade_stores_what_training_then_reads(
    stack: LocalStack, client: redis.Redis, redis_prefix: str, bbc: tuple[list[str], list[str]]
) -> None:
    texts = [f"{t} (served)" for t in bbc[0]]  # not in this process's cache from the test above
    labels = bbc[1]
    label_set = sorted(set(labels))
    encoder_model = f"test-encoder-{uuid.uuid4().hex[:8]}"
    model = f"test-cascade-{uuid.uuid4().hex[:8]}"
    encoder = shared_encoder()
    store = EmbeddingStore(client, redis_prefix, encoder.encoder_id, encoder.encoder.dim)
    # A bar of 1.0 escalates every item: the whole second stage is exercised.
    cascade = CascadeFamily(bar=1.0).with_store(store).fit(texts[:30], labels[:30], label_set)
    cascade.write_version(stack.model_repository, model, 1)
    classifier = TritonClassifier(stack.triton_grpc_url, timeout_s=120)
    try:
        assert (
            ensure_encoder_model(stack.model_repository, stack.triton_grpc_url, encoder_model)
            == encoder_model
        )
        assert repo.load_and_wait(stack.triton_grpc_url, model, timeout=120) == 1
        stage = EncoderStage(classifier, client, redis_prefix, encoder_model, batch_size=16)
        queries = texts[30:70]
        assert classifier.model_ready(model)
        answer = classifier.predict(model, queries, 64)
        assert answer.escalate is not None and answer.escalate.all()
        written = _stored(client, redis_prefix)
        served = stage.answer(model, answer.model_version, queries)
        assert served is not None and served.shape == (40, len(label_set))
        assert _stored(client, redis_prefix) == written + 40  # the cascade encoded and stored each once
        again = stage.answer(model, answer.model_version, queries)  # e.g. a rescore: read, not encoded
        assert _stored(client, redis_prefix) == written + 40
        np.testing.assert_array_equal(again, served)

        # People label those items; retraining reads their embeddings instead of encoding them.
        before = encoder.encoded
        retrained = CascadeFamily(bar=1.0).with_store(store).fit(texts[:70], labels[:70], label_set)
        assert encoder.encoded == before  # the first 30 were stored by the first fit, 40 by serving
        # In process, the model answers what Triton answers on the same stored embeddings.
        np.testing.assert_allclose(cascade.predict_proba(queries), served, atol=1e-5)
        assert retrained.predict_proba(queries).shape == (40, len(label_set))
    finally:
        classifier.close()
        triton = grpcclient.InferenceServerClient(stack.triton_grpc_url)
        try:
            for name in (model, encoder_model):
                triton.unload_model(name)
        finally:
            triton.close()
