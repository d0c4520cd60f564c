"""The embedding store: each text's sentence embedding, computed once and kept in Redis.

The sentence encoder is the expensive step of the encoder family (tens of milliseconds per post
on a CPU); everything after it (a logistic-regression head, a training) costs microseconds per
item. So an embedding is computed at most once and kept here, where every later user reads it:
the inference service's cascade (which encodes the items the fast family is unsure of) writes
it, retraining reads it when people have labeled the item (and encodes and writes only the
labeled texts that were never encoded), and a restart or a rescore of either finds it again.

Keys: ``<prefix>:embedding:<encoder id>:<text digest>`` where the digest is the 128-bit BLAKE2b
of the UTF-8 text (hex). Keyed by content rather than by item: the same text is the same
embedding whatever item or project carries it, a rescored item hits its own key, and the
families' ``fit(texts, ...)`` contract needs no item ids. The encoder id
(:func:`encoder_id`) names the graph (its SHA-256) and the token cut, so a different encoder
or cut never reads another's embeddings. Values: little-endian float32 bytes, ``dim`` of them
(1,536 bytes for all-MiniLM-L6-v2). Entries live as long as Redis keeps its data (the local
stack and the chart run Redis with an append-only file); ``ttl_s`` bounds them if memory matters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import redis

from labelloop.core.redis_store import Keys, unavailable

__all__ = ["EmbeddingStore", "encoder_id", "text_digest"]


def text_digest(text: str) -> str:
    """The hex BLAKE2b-128 digest of ``text`` (UTF-8; lone surrogates kept): its key part."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def encoder_id(model_sha256: str, max_seq_length: int) -> str:
    """A short id of an encoder graph and its token cut (12 hex characters)."""
    return hashlib.sha256(f"{model_sha256}:{max_seq_length}".encode()).hexdigest()[:12]


class EmbeddingStore:
    """Embeddings of one encoder (``encoder``, see :func:`encoder_id`) of dimension ``dim`` in Redis.

    Thread-safe (one Redis round trip per call). Redis errors surface as
    ``DependencyUnavailable`` (connection, timeout) or ``LabelloopError``.
    ``writes`` counts the embeddings this instance has stored (tests and metrics read it).
    """

    def __init__(
        self, client: redis.Redis, key_prefix: str, encoder: str, dim: int, ttl_s: int | None = None
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.client = client
        self.keys = Keys(key_prefix)
        self.encoder = encoder
        self.dim = dim
        self.ttl_s = ttl_s
        self.writes = 0

    def key(self, text: str) -> str:
        """The Redis key of ``text``'s embedding."""
        return self.keys("embedding", self.encoder, text_digest(text))

    def get_many(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Stored embeddings of ``texts``: a float32 ``(len(texts), dim)`` array (zero rows where
        none is stored) and the indices of those missing, ascending. A stored value of the wrong
        size counts as missing (it is overwritten by the next ``put_many``)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out, []
        try:
            values = self.client.mget([self.key(t) for t in texts])
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        missing = []
        for i, value in enumerate(values):
            if isinstance(value, bytes) and len(value) == 4 * self.dim:
                out[i] = np.frombuffer(value, dtype="<f4")
            else:
                missing.append(i)
        return out, missing

    def put_many(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Store one embedding per text (row ``i`` for ``texts[i]``), in one round trip."""
        rows = np.ascontiguousarray(embeddings, dtype="<f4")
        if rows.shape != (len(texts), self.dim):
            raise ValueError(f"{rows.shape} embeddings for {len(texts)} texts of dimension {self.dim}")
        if not texts:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for text, row in zip(texts, rows, strict=True):
                pipe.set(self.key(text), row.tobytes(), ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        self.writes += len(texts)

    def embed(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Embeddings of ``texts``, each text encoded at most once: the stored ones are read, the
        others (each distinct text once) are encoded with ``encode`` in one call and stored."""
        out, missing = self.get_many(texts)
        if not missing:
            return out
        firsts: dict[str, list[int]] = {}
        for i in missing:
            firsts.setdefault(texts[i], []).append(i)
        fresh_texts = list(firsts)
        fresh = np.asarray(encode(fresh_texts), dtype=np.float32)
        self.put_many(fresh_texts, fresh)
        for row, rows in zip(fresh, firsts.values(), strict=True):
            out[rows] = row
        return out
