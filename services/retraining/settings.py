"""Retraining settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.settings import CommonSettings, non_negative, port, positive, setting


def _fraction(value: float) -> str | None:
    return None if 0.0 < value < 1.0 else "must be between 0 and 1 (exclusive)"


def _gate_metric(value: str) -> str | None:
    return None if value in ("accuracy", "macro_f1") else "must be accuracy or macro_f1"


@dataclass(frozen=True)
class RetrainingSettings(CommonSettings):
    """Retraining: when to train, how to judge a candidate, and where the model API listens."""

    metrics_port: int = setting(9105, port)
    grpc_port: int = setting(50053, port)
    # Trigger policy (see labelloop.retraining.triggers).
    first_model_labels: int = setting(50, positive)
    min_classes: int = setting(2, positive)
    retrain_every_labels: int = setting(25, positive)
    retrain_growth: float = setting(0.2, non_negative)  # or this share of the last model's labels, if more
    retrain_every_seconds: float = setting(600.0, positive)
    failure_backoff_seconds: float = setting(30.0, non_negative)
    # Evaluation and gate.
    holdout_fraction: float = setting(0.2, _fraction)  # share of human labels never trained on
    gate_metric: str = setting("accuracy", _gate_metric)
    gate_margin: float = setting(0.01, non_negative)  # candidate may be this much worse than champion
    calibration_folds: int = setting(3, positive)  # out-of-fold predictions for calibration
    # Of the precision lower bound that sets the thresholds. 0.5 is the median-unbiased estimate
    # (just below the point estimate): the out-of-fold pool is the items the model was unsure of,
    # harder than the stream, so it already errs on the safe side; 0.95 admitted nothing on 20
    # classes (see README, Benchmarks).
    confidence_level: float = setting(0.5, _fraction)
    min_audits: int = setting(20, positive)  # audits before tightening can happen
    # The model families trained and compared at each training (empty: all available). Default
    # tfidf-lr only: on CPU Triton the minilm-head family serves about 10 items/s (the encoder runs
    # for every item), which caps the whole stream; add it (tfidf-lr,minilm-head) on a GPU Triton.
    families: tuple[str, ...] = setting(("tfidf-lr",))
    load_timeout_s: float = setting(120.0, positive)
    # Fault injection for tests: pause this long in the middle of writing a version into the
    # model repository (0 = off), so a test can kill -9 the service with a half-written version.
    fault_pause_writing_version_s: float = setting(0.0, non_negative)
