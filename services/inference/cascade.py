"""The cascade's second stage in the inference service: embeddings for the items a fast model is
unsure of, each item encoded at most once, then the model's encoder-stage answer.

A project model of family ``cascade`` (``labelloop.retraining.cascade``) answers every item with
its fast stage and marks with ESCALATE the rows it is unsure of. For those only, this stage
reads each text's embedding from the embedding store (``labelloop.core.embeddings``) or, when
none is stored, asks the shared encoder model in Triton (one request per ``batch_size`` texts,
length-sorted inside the model) and stores it; then it sends the texts with their embeddings to
the same model version, which answers with its head's probabilities combined with its fast
stage's (``metadata.combine``, see ``labelloop.retraining.cascade``). Confident items never
reach the encoder, so the auto path keeps the fast family's speed; an escalated item would
otherwise go to people.

The store's encoder id comes from the served encoder model's config (parameter ``encoder_id``),
so the inference service needs no encoder files of its own; it is read again when Triton serves
a new encoder version.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import redis

from labelloop.core.embeddings import EmbeddingStore
from labelloop.core.triton_client import ModelMissing, TritonClassifier

log = logging.getLogger(__name__)

GROUP_CHUNKS = 2
"""Encoder requests (of `batch_size` texts) sent together before their embeddings are stored."""


class EncoderStage:
    """Embeddings of escalated texts and the model's answer on them (see module doc)."""

    def __init__(
        self,
        classifier: TritonClassifier,
        client: redis.Redis,
        key_prefix: str,
        encoder_model: str,
        batch_size: int,
    ) -> None:
        self.classifier = classifier
        self.client = client
        self.key_prefix = key_prefix
        self.encoder_model = encoder_model
        self.batch_size = batch_size
        self._store: EmbeddingStore | None = None

    def store(self) -> EmbeddingStore | None:
        """The embedding store of the encoder Triton serves now; None when it serves none."""
        if not self.classifier.model_ready(self.encoder_model):
            return None
        parameters = self.classifier.parameters(self.encoder_model)
        encoder, dim = parameters.get("encoder_id", ""), int(parameters.get("dim") or 0)
        if not encoder or dim < 1:
            log.warning("encoder model %s declares no encoder_id/dim", self.encoder_model)
            return None
        if self._store is None or self._store.encoder != encoder:
            self._store = EmbeddingStore(self.client, self.key_prefix, encoder, dim)
            log.info("cascade: embeddings of encoder %s (%s)", encoder, self.encoder_model)
        return self._store

    def _embeddings(self, store: EmbeddingStore, texts: Sequence[str]) -> np.ndarray:
        """The texts' embeddings, encoded and stored :data:`GROUP_CHUNKS` requests at a time, so
        a batch whose encoding outlasts one request's timeout (every item escalates while the
        zero-shot prior serves, and a loaded CPU encodes 10-20 posts/s) still progresses: the
        groups stored before a timeout are read back when the batch is redelivered."""
        group = self.batch_size * GROUP_CHUNKS
        parts = [
            store.embed(
                texts[i : i + group],
                lambda fresh: self.classifier.embed(self.encoder_model, fresh, self.batch_size),
            )
            for i in range(0, len(texts), group)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, store.dim), dtype=np.float32)

    def answer(self, model_name: str, version: int, texts: Sequence[str]) -> np.ndarray | None:
        """The encoder-stage probabilities of `model_name` version `version` for `texts`, or None
        when that cannot be had now (no encoder served, or the version was swapped out): the
        fast answer then stands."""
        store = self.store()
        if store is None:
            return None
        try:
            embeddings = self._embeddings(store, texts)
            return self.classifier.predict_embedded(model_name, version, texts, embeddings, self.batch_size)
        except ModelMissing as exc:
            log.info("cascade: %s unavailable (%s); the fast answer stands", model_name, exc)
            return None
