"""Inference settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.settings import CommonSettings, non_negative, port, positive, setting


@dataclass(frozen=True)
class InferenceSettings(CommonSettings):
    """Inference: micro-batches items to Triton and produces predictions."""

    metrics_port: int = setting(9102, port)
    max_batch_size: int = setting(64, positive)  # items per Triton request
    max_poll_records: int = setting(512, positive)  # items per consumer batch (several requests)
    max_wait_ms: int = setting(10, non_negative)  # micro-batching: wait this long to fill a batch
    triton_timeout_s: float = setting(30.0, positive)
    model_check_s: float = setting(2.0, positive)  # cache of "is this model loaded?"
    # The cascade's second stage: the shared encoder Triton model asked for the embeddings of the
    # items a cascade model's fast stage is unsure of (empty: no second stage), and texts per request.
    encoder_model: str = setting("labelloop-encoder")
    encoder_batch_size: int = setting(32, positive)
