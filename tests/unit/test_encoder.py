"""The "minilm-head" family: the torch-free all-MiniLM-L6-v2 encoder, its head, and its model versions.

Needs the encoder that `make setup` builds into .cache/encoder (deploy/local/setup.d/30-encoder.sh)
and the bbcnews dataset. minilm_reference.json holds sentence-transformers' own embeddings of a few
texts (one longer than 256 tokens), made once with torch, which this project does not install.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelloop.core import encoder_runtime, model_repository
from labelloop.datasets import load
from labelloop.retraining import encoder as minilm
from labelloop.retraining.families import ModelFamily, TrainedModel, available_families

REFERENCE = json.loads((Path(__file__).with_name("minilm_reference.json")).read_text())


@pytest.fixture(scope="module")
def cached() -> minilm.CachedEncoder:
    return minilm.shared_encoder()


@pytest.fixture(scope="module")
def bbc() -> tuple[list[str], list[str]]:
    records = load("bbcnews", limit=60)
    # Headline and first lines (~100 tokens) classify well and keep the encoder calls short.
    return [r["text"][:500] for r in records], [r["label"] for r in records]


def test_family_is_available_and_matches_the_protocol() -> None:
    assert minilm.MINILM_FAMILY.name == "minilm-head"
    assert isinstance(minilm.MINILM_FAMILY, ModelFamily)
    assert "minilm-head" in [family.name for family in available_families()]


def test_embeddings_are_unit_rows_in_input_order(cached: minilm.CachedEncoder) -> None:
    texts = ["a short one", "", "a somewhat longer sentence about the weather in the mountains"]
    embeddings = cached.encoder.encode(texts)
    assert embeddings.shape == (3, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    reversed_ = cached.encoder.encode(texts[::-1])
    np.testing.assert_allclose(reversed_[::-1], embeddings, atol=1e-5)
    assert cached.encoder.encode([]).shape == (0, 384)


def test_long_texts_are_cut_at_the_token_limit(cached: minilm.CachedEncoder) -> None:
    long_text = REFERENCE["texts"][-1]
    assert len(_encoder("fp32").tokenize([long_text])[0]) == encoder_runtime.MAX_SEQ_LENGTH == 256
    assert len(cached.encoder.tokenize([long_text])[0]) == minilm.SERVING.max_seq_length
    ids = cached.encoder.tokenize(["hello world"])[0]
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]


def _encoder(variant: str, batch_size: int = 1) -> encoder_runtime.SentenceEncoder:
    directory = minilm.encoder_dir()
    manifest = encoder_runtime.read_manifest(directory)
    return encoder_runtime.SentenceEncoder(
        directory / manifest["models"][variant]["file"],
        directory / manifest["tokenizer"]["file"],
        batch_size=batch_size,
    )


def test_the_default_is_the_measured_serving_configuration(cached: minilm.CachedEncoder) -> None:
    serving = minilm.SERVING
    assert (cached.variant, cached.max_seq_length, cached.batch_size, cached.batch_tokens) == (
        serving.variant,
        serving.max_seq_length,
        serving.batch_size,
        serving.batch_tokens,
    )
    assert cached.encoder.max_seq_length == serving.max_seq_length


@pytest.mark.parametrize(("variant", "min_cosine"), [("fp32", 0.9999), ("int8", 0.96)])
def test_agrees_with_sentence_transformers(variant: str, min_cosine: float) -> None:
    model = _encoder(variant)
    reference = np.asarray(REFERENCE["embeddings"], dtype=np.float32)
    cosines = (model.encode(REFERENCE["texts"]) * reference).sum(axis=1)
    assert cosines.shape == (len(REFERENCE["texts"]),)
    assert cosines.min() >= min_cosine, cosines


def test_padding_is_masked_so_batch_mates_do_not_matter_in_fp32() -> None:
    model = _encoder("fp32", batch_size=64)
    text = "the striker scored a late goal"
    alone = model.encode([text])
    neighbours = [REFERENCE["texts"][-1], "rain", text, "parliament passed the budget after a long debate"]
    np.testing.assert_allclose(model.encode(neighbours)[2:3], alone, atol=2e-6)


def test_linear_head_reproduces_sklearn_and_zeroes_unseen_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    for classes in (["b", "a"], ["b", "a", "c"]):
        y = [classes[i % len(classes)] for i in range(60)]
        x_shifted = x + np.array([[classes.index(label)] * 8 for label in y])
        clf = LogisticRegression(C=10.0, max_iter=1000).fit(x_shifted, y)
        labels = ["c", "unseen", "a", "b"]
        head = encoder_runtime.LinearHead(clf.coef_, clf.intercept_, list(clf.classes_), labels)
        probs = head.predict_proba(x_shifted)
        expected = clf.predict_proba(x_shifted)
        for j, label in enumerate(labels):
            if label in clf.classes_:
                np.testing.assert_allclose(
                    probs[:, j], expected[:, list(clf.classes_).index(label)], atol=1e-12
                )
            else:
                assert not probs[:, j].any()
        head.save(tmp_path / "head.npz")
        again = encoder_runtime.LinearHead.load(tmp_path / "head.npz")
        np.testing.assert_array_equal(again.predict_proba(x_shifted), probs)
        assert again.labels == labels


def test_fit_and_predict_on_bbc_news(bbc: tuple[list[str], list[str]], cached: minilm.CachedEncoder) -> None:
    texts, labels = bbc
    label_set = [*sorted(set(labels)), "never-seen"]
    model = minilm.MINILM_FAMILY.fit(texts[:40], labels[:40], label_set)
    assert isinstance(model, TrainedModel) and model.family == "minilm-head"
    assert model.params["n_train"] == 40 and model.params["max_seq_length"] == minilm.SERVING.max_seq_length
    probs = model.predict_proba(texts[40:])
    assert probs.shape == (20, len(label_set))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert not probs[:, -1].any()
    accuracy = np.mean([label_set[i] == y for i, y in zip(probs.argmax(axis=1), labels[40:], strict=True)])
    assert accuracy >= 0.8, accuracy


def test_retraining_embeds_only_new_texts(
    bbc: tuple[list[str], list[str]], cached: minilm.CachedEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{text} (retraining test)" for text in bbc[0][:45]]  # texts no other test embedded
    labels = bbc[1][:45]
    cached.embed(texts[:40])
    encoded: list[str] = []
    original = cached.encoder.encode

    def counting_encode(batch: list[str], batch_size: int | None = None) -> np.ndarray:
        encoded.extend(batch)
        return original(batch, batch_size)

    monkeypatch.setattr(cached.encoder, "encode", counting_encode)
    minilm.MINILM_FAMILY.fit(texts, labels, sorted(set(labels)))
    assert encoded == texts[40:45]


def test_both_cascades_share_their_fits_and_differ_only_on_escalated_items(
    bbc: tuple[list[str], list[str]], cached: minilm.CachedEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelloop.retraining.cascade import CASCADE_FAMILY, CASCADE_REPLACE_FAMILY

    texts, labels = [f"{text} (shared fits)" for text in bbc[0]], bbc[1]
    label_set = sorted(set(labels))
    heads: list[int] = []
    original = LogisticRegression.fit

    def counting_fit(self: LogisticRegression, x: np.ndarray, y: object) -> LogisticRegression:
        heads.append(x.shape[1])
        return original(self, x, y)

    monkeypatch.setattr(LogisticRegression, "fit", counting_fit)
    mean = CASCADE_FAMILY.fit(texts[:40], labels[:40], label_set)
    replace = CASCADE_REPLACE_FAMILY.fit(texts[:40], labels[:40], label_set)
    # One TF-IDF fit (thousands of n-gram columns) and one head fit (384 embedding columns): the
    # second cascade's stages are the first one's.
    assert len(heads) == 2 and heads[1] == 384, heads
    assert replace.encoder.head is mean.encoder.head and replace.fast.pipeline is mean.fast.pipeline
    assert (mean.family, mean.combine, replace.family, replace.combine) == (
        "cascade",
        "mean",
        "cascade-replace",
        "replace",
    )
    rest = texts[40:]
    fast = mean.fast.predict_proba(rest)
    head = mean.encoder.predict_proba(rest)
    # 40 labels leave TF-IDF below the default bar everywhere: a bar between its answers.
    bar = float(np.median(fast.max(axis=1)))
    mean, replace = dataclasses.replace(mean, bar=bar), dataclasses.replace(replace, bar=bar)
    escalated = fast.max(axis=1) < bar
    assert escalated.any() and not escalated.all(), "the test needs both kinds of rows"
    np.testing.assert_allclose(mean.predict_proba(rest)[escalated], (fast[escalated] + head[escalated]) / 2)
    np.testing.assert_allclose(replace.predict_proba(rest)[escalated], head[escalated])
    np.testing.assert_allclose(replace.predict_proba(rest)[~escalated], mean.predict_proba(rest)[~escalated])
    # Other data or other hyper-parameters fit again.
    CASCADE_REPLACE_FAMILY.fit(texts[:39], labels[:39], label_set)
    minilm.MinilmFamily(C=1.0).fit(texts[:40], labels[:40], label_set)
    assert len(heads) == 5 and heads[3:] == [384, 384], heads


def test_cache_is_bounded() -> None:
    small = minilm.CachedEncoder(minilm.encoder_dir(), "fp32", cache_entries=3)
    first = small.embed(["one", "two", "three", "four", "one"])
    assert small.cached() == 3
    np.testing.assert_array_equal(first[0], first[4])
    np.testing.assert_allclose(small.embed(["four"]), first[3:4], atol=1e-6)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="two distinct"):
        minilm.MINILM_FAMILY.fit(["a", "b"], ["x", "x"], ["x", "y"])
    with pytest.raises(ValueError, match="not in the label set"):
        minilm.MINILM_FAMILY.fit(["a", "b"], ["x", "z"], ["x", "y"])
    with pytest.raises(ValueError, match="labels"):
        minilm.MINILM_FAMILY.fit(["a"], ["x", "y"], ["x", "y"])


def test_written_version_serves_the_same_probabilities_without_labelloop(
    tmp_path: Path, bbc: tuple[list[str], list[str]]
) -> None:
    texts, labels = bbc
    label_set = ["tech", *sorted(set(labels) - {"tech"}), "never-seen"]
    model = minilm.MINILM_FAMILY.fit(texts[:30], labels[:30], label_set)
    version_dir = model.write_version(tmp_path, "news", 1)

    meta = model_repository.read_labels(tmp_path, "news", 1)
    assert meta["family"] == "minilm-head" and meta["labels"] == label_set
    assert sorted(p.name for p in version_dir.iterdir()) == sorted(
        ["model.py", "labels.json", *meta["artifacts"].values()]
    )
    # Load the copied runtime by path, as the Triton model does (no labelloop import inside).
    spec = importlib.util.spec_from_file_location(
        "copied_encoder_runtime", version_dir / "encoder_runtime.py"
    )
    assert spec is not None and spec.loader is not None
    runtime = importlib.util.module_from_spec(spec)
    sys.modules["copied_encoder_runtime"] = runtime
    try:
        spec.loader.exec_module(runtime)
        # Texts no other test embedded: both sides then run them in the same length-sorted
        # batches (the INT8 graph quantises activations per batch, so batch-mates matter).
        queries = [f"{t} (served)" for t in texts[30:40]]
        served = runtime.EncoderClassifier(version_dir, meta).predict_proba(queries)
    finally:
        del sys.modules["copied_encoder_runtime"]
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, model.predict_proba(queries), atol=1e-5)
