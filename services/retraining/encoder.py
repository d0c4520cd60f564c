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

import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
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

from labelloop.core import encoder_runtime, model_repository

__all__ = [
    "ENCODER_DIR_ENV",
    "MINILM_FAMILY",
    "CachedEncoder",
    "MinilmFamily",
    "MinilmModel",
    "encoder_dir",
    "shared_encoder",
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

    def __init__(self, directory: Path, variant: str, cache_entries: int) -> None:
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
        self.batch_size = int(entry.get("batch_size", encoder_runtime.DEFAULT_BATCH_SIZE))
        self.tokenizer_path = directory / manifest["tokenizer"]["file"]
        self.max_seq_length = int(manifest["max_seq_length"])
        self.encoder = encoder_runtime.SentenceEncoder(
            self.model_path,
            self.tokenizer_path,
            max_seq_length=self.max_seq_length,
            batch_size=self.batch_size,
        )
        self.cache_entries = cache_entries
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (cached), float32, one unit-length row per text."""
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
            fresh = self.encoder.encode([texts[i] for i in firsts])
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


_encoders: dict[tuple[Path, str], CachedEncoder] = {}
_encoders_lock = threading.Lock()


def shared_encoder(variant: str | None = None, cache_entries: int = 50_000) -> CachedEncoder:
    """The process-wide :class:`CachedEncoder` for ``variant`` (None: the manifest's default) of
    the current encoder directory; created on first use (loads the ONNX model, ~1 s), when
    ``cache_entries`` bounds its cache (later calls share that instance and its bound)."""
    directory = encoder_dir()
    chosen = variant or str(encoder_runtime.read_manifest(directory)["default"])
    with _encoders_lock:
        encoder = _encoders.get((directory, chosen))
        if encoder is None:
            encoder = _encoders[(directory, chosen)] = CachedEncoder(directory, chosen, cache_entries)
        return encoder


@dataclass
class MinilmModel:
    """A fitted head on a frozen encoder; ``predict_proba`` columns follow ``head.labels``."""

    encoder: CachedEncoder
    head: encoder_runtime.LinearHead
    params: dict[str, Any]
    family: str = FAMILY_NAME

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, ``(len(texts), len(label_set))``, label-set order; unseen labels get 0."""
        return self.head.predict_proba(self.encoder.embed(texts))

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
            },
        )


@dataclass(frozen=True)
class MinilmFamily:
    """Trains a logistic-regression head (``C``, L2, lbfgs) on all-MiniLM-L6-v2 embeddings.

    ``variant`` picks the encoder build (None: the encoder directory's default); embeddings are
    cached across trainings in this process (see :func:`shared_encoder`).
    """

    name: str = FAMILY_NAME
    C: float = 10.0
    max_iter: int = 2000
    variant: str | None = None
    cache_entries: int = 50_000

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
        embeddings = encoder.embed(texts)
        classifier = LogisticRegression(C=self.C, max_iter=self.max_iter)
        classifier.fit(embeddings, labels)
        head = encoder_runtime.LinearHead(
            classifier.coef_, classifier.intercept_, [str(c) for c in classifier.classes_], label_set
        )
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
        return MinilmModel(encoder=encoder, head=head, params=params)


MINILM_FAMILY = MinilmFamily()
