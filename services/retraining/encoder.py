"""The transfer-learning family ``"minilm-head"``: all-MiniLM-L6-v2 sentence embeddings + logistic regression.

The encoder is frozen; only a multinomial logistic-regression head is trained on its unit-length
embeddings, which is what wins with few labels (see the issue-4 closing note for numbers). The
embeddings come from :class:`labelloop.core.encoder_runtime.SentenceEncoder`, the same code the
Triton model runs (that file is copied into each version), so served probabilities equal
in-process ``predict_proba`` up to float rounding.

The encoder directory is ``$LABELLOOP_ENCODER_DIR``, else ``<repo root>/.cache/encoder``, built
by ``deploy/local/setup.d/30-encoder.sh`` (``make setup``). Importing this module raises
ImportError when onnxruntime or tokenizers is missing or the encoder has not been built, so
``labelloop.retraining.families.available_families`` leaves the family out.

Embeddings are cached per process, keyed by a hash of the text, in a bounded LRU shared by all
projects (``MinilmFamily.cache_entries`` rows, 1.5 KB each), so retraining on a growing label set
embeds only the new texts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"the minilm-head family needs onnxruntime and tokenizers (make setup): {error}"
    ) from error

from labelloop.core import embeddings, encoder_runtime, model_repository
from labelloop.core.embeddings import EmbeddingStore
from labelloop.retraining.families import RecentFits

__all__ = [
    "ENCODER_DIR_ENV",
    "ENCODER_MODEL",
    "MINILM_FAMILY",
    "SERVING",
    "CachedEncoder",
    "MinilmFamily",
    "MinilmModel",
    "ServingConfig",
    "encoder_dir",
    "ensure_encoder_model",
    "shared_encoder",
    "write_encoder_model",
]

FAMILY_NAME = "minilm-head"
ENCODER_DIR_ENV = "LABELLOOP_ENCODER_DIR"
ENCODER_FILE = "encoder.onnx"
RUNTIME_FILE = "encoder_runtime.py"
HEAD_FILE = "head.npz"


def encoder_dir() -> Path:
    """``$LABELLOOP_ENCODER_DIR`` when set, else ``<repo root>/.cache/encoder`` (found from this
    package's location, ``services/retraining/`` → two levels up)."""
    override = os.environ.get(ENCODER_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / ".cache" / "encoder"


def _read_manifest() -> dict[str, Any]:
    directory = encoder_dir()
    try:
        return encoder_runtime.read_manifest(directory)
    except FileNotFoundError:
        raise ImportError(
            f"the sentence encoder is not built in {directory} (run `make setup`, which runs "
            f"deploy/local/setup.d/30-encoder.sh, or set {ENCODER_DIR_ENV})"
        ) from None


_read_manifest()  # fail the import, not the first training, when the encoder is missing


class CachedEncoder:
    """One encoder variant of the encoder directory, with a bounded per-process embedding cache.

    ``embed`` returns float32 ``(len(texts), dim)`` unit-length rows in input order; texts seen
    before (same text, this variant) come from the cache, the others are encoded in one call.
    Thread-safe. The least recently used rows are dropped beyond ``cache_entries``.
    """

    def __init__(
        self,
        directory: Path,
        variant: str,
        cache_entries: int,
        *,
        max_seq_length: int | None = None,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
    ) -> None:
        manifest = encoder_runtime.read_manifest(directory)
        if variant not in manifest["models"]:
            raise ValueError(
                f"encoder variant {variant!r} not built in {directory}: {sorted(manifest['models'])}"
            )
        entry = manifest["models"][variant]
        self.directory = directory
        self.variant = variant
        self.manifest = manifest
        self.model_path = directory / entry["file"]
        self.model_sha256 = str(entry["sha256"])
        self.batch_size = batch_size or int(entry.get("batch_size", encoder_runtime.DEFAULT_BATCH_SIZE))
        self.batch_tokens = batch_tokens
        self.tokenizer_path = directory / manifest["tokenizer"]["file"]
        self.max_seq_length = max_seq_length or int(manifest["max_seq_length"])
        self.encoder = encoder_runtime.SentenceEncoder(
            self.model_path,
            self.tokenizer_path,
            max_seq_length=self.max_seq_length,
            batch_size=self.batch_size,
            batch_tokens=batch_tokens,
        )
        self.encoder_id = embeddings.encoder_id(self.model_sha256, self.max_seq_length)
        """Names this graph and token cut in the embedding store's keys."""
        self.encoded = 0
        """Texts this instance has run through the encoder (cache and store hits excluded)."""
        self.cache_entries = cache_entries
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += len(texts)
        return self.encoder.encode(texts)

    def embed(self, texts: Sequence[str], store: EmbeddingStore | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (cached), float32, one unit-length row per text. With a
        ``store`` (of this encoder: ``store.encoder == self.encoder_id``), texts missing from
        the process cache are read from it, and only those it lacks are encoded (and stored)."""
        if store is not None and store.encoder != self.encoder_id:
            raise ValueError(f"embedding store of encoder {store.encoder}, this is {self.encoder_id}")
        keys = [self._key(text) for text in texts]
        out = np.zeros((len(texts), self.encoder.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._cache.get(key)
                if row is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._cache.move_to_end(key)
                    out[i] = row
        if missing:
            firsts = [rows[0] for rows in missing.values()]
            wanted = [texts[i] for i in firsts]
            fresh = store.embed(wanted, self._encode) if store is not None else self._encode(wanted)
            with self._lock:
                for (key, rows), row in zip(missing.items(), fresh, strict=True):
                    out[rows] = row
                    self._cache[key] = row
                    self._cache.move_to_end(key)
                while len(self._cache) > self.cache_entries:
                    self._cache.popitem(last=False)
        return out

    def cached(self) -> int:
        """How many texts are cached now."""
        with self._lock:
            return len(self._cache)


@dataclass(frozen=True)
class ServingConfig:
    """How the encoder runs for serving and training: the graph variant, the token cut and the
    batch plan (length-sorted batches of at most ``batch_size`` texts and ``batch_tokens``
    padded tokens). Chosen by accuracy per cost (``python -m labelloop.bench.encoder_speed
    accuracy``; the table is in the README): on 20 Newsgroups (400 training posts, 400 held
    out) every variant and cut gave a head of the same accuracy (0.72-0.73) and coverage at 0.95
    precision (0.24-0.30, within the noise of 400 items), while INT8 at 128 tokens cost half of
    INT8 at 256 and a third of FP32 at 256 per post: about 90 posts/s and 256 tweet-length
    texts/s per 2 cores of CPU time, the only one of the four above the issue's 60 and 200."""

    variant: str
    max_seq_length: int
    batch_size: int
    batch_tokens: int


SERVING = ServingConfig(
    variant="int8",
    max_seq_length=128,
    batch_size=encoder_runtime.SERVING_BATCH_SIZE,
    batch_tokens=encoder_runtime.SERVING_BATCH_TOKENS,
)
ENCODER_MODEL = "labelloop-encoder"
"""The Triton model of the shared encoder (family ``minilm-encoder``: TEXT -> EMBEDDING)."""

_encoders: dict[tuple[Path, str], CachedEncoder] = {}
_encoders_lock = threading.Lock()


def shared_encoder(variant: str | None = None, cache_entries: int = 50_000) -> CachedEncoder:
    """The process-wide :class:`CachedEncoder` for ``variant`` (None: :data:`SERVING`'s) of the
    current encoder directory, with :data:`SERVING`'s token cut and batch plan; created on first
    use (loads the ONNX model, ~1 s), when ``cache_entries`` bounds its cache (later calls share
    that instance and its bound)."""
    directory = encoder_dir()
    chosen = variant or SERVING.variant
    with _encoders_lock:
        encoder = _encoders.get((directory, chosen))
        if encoder is None:
            encoder = _encoders[(directory, chosen)] = CachedEncoder(
                directory,
                chosen,
                cache_entries,
                max_seq_length=SERVING.max_seq_length,
                batch_size=SERVING.batch_size,
                batch_tokens=SERVING.batch_tokens,
            )
        return encoder


def write_encoder_model(repo: Path, model_name: str, version: int, encoder: CachedEncoder) -> Path:
    """Write ``encoder`` as ``version`` of the shared encoder model ``model_name`` (family
    ``minilm-encoder``: TEXT in, EMBEDDING out, ``dim`` columns); ``metadata.encoder_id`` is the
    embedding store's id of this graph and cut. Raises AlreadyExists when the version exists."""

    def write_files(directory: Path) -> None:
        try:
            os.link(encoder.model_path, directory / ENCODER_FILE)
        except OSError:
            shutil.copyfile(encoder.model_path, directory / ENCODER_FILE)
        shutil.copyfile(encoder.tokenizer_path, directory / encoder_runtime.TOKENIZER_FILE)
        shutil.copyfile(encoder_runtime.__file__, directory / RUNTIME_FILE)

    return model_repository.write_version(
        repo,
        model_name,
        version,
        "minilm-encoder",
        [f"e{i}" for i in range(encoder.encoder.dim)],
        write_files,
        artifacts={
            "encoder": ENCODER_FILE,
            "tokenizer": encoder_runtime.TOKENIZER_FILE,
            "runtime": RUNTIME_FILE,
        },
        metadata={
            "encoder_id": encoder.encoder_id,
            "encoder_variant": encoder.variant,
            "encoder_sha256": encoder.model_sha256,
            "max_seq_length": encoder.max_seq_length,
            "batch_size": encoder.batch_size,
            "batch_tokens": encoder.batch_tokens,
        },
        output_name="EMBEDDING",
        parameters={"encoder_id": encoder.encoder_id, "dim": str(encoder.encoder.dim)},
    )


def ensure_encoder_model(repo: Path, triton_grpc_url: str, model_name: str | None = None) -> str:
    """Make Triton serve the shared encoder (:data:`SERVING`'s) as ``model_name`` (default
    :data:`ENCODER_MODEL`): writes a new version when the newest one on disk is of another
    graph or cut, loads it when Triton does not serve it. Idempotent; returns the model name.
    Raises ModelLoadError / DependencyUnavailable as ``model_repository.load_and_wait``."""
    name = model_name or ENCODER_MODEL
    encoder = shared_encoder()
    versions = model_repository.list_versions(repo, name)
    newest = versions[-1] if versions else 0
    if not newest or model_repository.read_labels(repo, name, newest)["metadata"].get("encoder_id") != (
        encoder.encoder_id
    ):
        newest += 1
        write_encoder_model(repo, name, newest, encoder)
    if newest not in model_repository.served_versions(triton_grpc_url, name):
        model_repository.load_and_wait(triton_grpc_url, name)
    return name


@dataclass
class MinilmModel:
    """A fitted head on a frozen encoder; ``predict_proba`` columns follow ``head.labels``."""

    encoder: CachedEncoder
    head: encoder_runtime.LinearHead
    params: dict[str, Any]
    family: str = FAMILY_NAME
    store: EmbeddingStore | None = None

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, ``(len(texts), len(label_set))``, label-set order; unseen labels get 0."""
        return self.head.predict_proba(self.encoder.embed(texts, self.store))

    def write_version(self, repo: Path, model_name: str, version: int) -> Path:
        """Write as family ``"minilm-head"``: the encoder graph (hard-linked from the encoder
        directory when on the same file system, else copied), its tokenizer, the runtime module
        and the head; ``metadata`` records the encoder variant, its SHA-256 and the token limit."""

        def write_files(directory: Path) -> None:
            try:
                os.link(self.encoder.model_path, directory / ENCODER_FILE)
            except OSError:
                shutil.copyfile(self.encoder.model_path, directory / ENCODER_FILE)
            shutil.copyfile(self.encoder.tokenizer_path, directory / encoder_runtime.TOKENIZER_FILE)
            shutil.copyfile(encoder_runtime.__file__, directory / RUNTIME_FILE)
            self.head.save(directory / HEAD_FILE)

        return model_repository.write_version(
            repo,
            model_name,
            version,
            FAMILY_NAME,
            self.head.labels,
            write_files,
            artifacts={
                "encoder": ENCODER_FILE,
                "tokenizer": encoder_runtime.TOKENIZER_FILE,
                "runtime": RUNTIME_FILE,
                "head": HEAD_FILE,
            },
            metadata={
                "encoder_variant": self.encoder.variant,
                "encoder_sha256": self.encoder.model_sha256,
                "encoder_source": self.encoder.manifest.get("source", ""),
                "max_seq_length": self.encoder.max_seq_length,
                "batch_size": self.encoder.batch_size,
                "batch_tokens": self.encoder.batch_tokens,
            },
        )


@dataclass(frozen=True)
class MinilmFamily:
    """Trains a logistic-regression head (``C``, L2, lbfgs) on all-MiniLM-L6-v2 embeddings.

    ``variant`` picks the encoder build (None: :data:`SERVING`'s); embeddings are cached across
    trainings in this process (see :func:`shared_encoder`) and, with a ``store``, kept in the
    embedding store, so a text is encoded once across trainings, restarts and the serving
    cascade (which writes the same store).
    """

    name: str = FAMILY_NAME
    C: float = 10.0
    max_iter: int = 2000
    variant: str | None = None
    cache_entries: int = 50_000
    store: EmbeddingStore | None = field(default=None, compare=False)

    def with_store(self, store: EmbeddingStore) -> MinilmFamily:
        """This family, keeping embeddings in ``store``."""
        return dataclasses.replace(self, store=store)

    def fit(self, texts: Sequence[str], labels: Sequence[str], label_set: Sequence[str]) -> MinilmModel:
        """Embed ``texts`` and fit the head. Raises ValueError when fewer than two distinct labels
        are given, when lengths differ, or when a label is outside ``label_set``."""
        from sklearn.linear_model import LogisticRegression

        labels = [str(label) for label in labels]
        label_set = [str(label) for label in label_set]
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        unknown = sorted(set(labels) - set(label_set))
        if unknown:
            raise ValueError(f"labels {unknown} are not in the label set {label_set}")
        if len(set(labels)) < 2:
            raise ValueError("training needs at least two distinct labels")
        encoder = shared_encoder(self.variant, self.cache_entries)

        def fit_head() -> encoder_runtime.LinearHead:
            embeddings = encoder.embed(texts, self.store)
            classifier = LogisticRegression(C=self.C, max_iter=self.max_iter)
            classifier.fit(embeddings, labels)
            return encoder_runtime.LinearHead(
                classifier.coef_, classifier.intercept_, [str(c) for c in classifier.classes_], label_set
            )

        # Both cascades fit this head on the same folds and split (families.RecentFits); the fit
        # is deterministic (lbfgs), so the second is answered from the first.
        key = f"minilm-head C={self.C} max_iter={self.max_iter} encoder={encoder.variant}"
        head = _RECENT_HEADS.fit(key, texts, labels, label_set, fit_head)
        params: dict[str, Any] = {
            "family": self.name,
            "encoder": "all-MiniLM-L6-v2",
            "encoder_source": str(encoder.manifest.get("source", "")),
            "encoder_variant": encoder.variant,
            "max_seq_length": encoder.max_seq_length,
            "embedding_dim": encoder.encoder.dim,
            "head": "logistic_regression",
            "C": self.C,
            "max_iter": self.max_iter,
            "n_train": len(labels),
            "n_classes_seen": len(head.classes),
        }
        return MinilmModel(encoder=encoder, head=head, params=params, store=self.store)


MINILM_FAMILY = MinilmFamily()

#: The recent head fits :meth:`MinilmFamily.fit` keeps: one training's folds and final fit (6
#: with the default 5 folds) and some room (a head is a few hundred KB at most).
_RECENT_HEADS: RecentFits[encoder_runtime.LinearHead] = RecentFits(8)
