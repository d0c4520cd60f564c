"""`python -m labelloop.retraining`: consumes `labels` and `annotations`, trains, gates,
deploys to Triton and publishes thresholds and `models` events; serves the ModelService gRPC
API. Env: the `LABELLOOP_*` variables of RetrainingSettings (MLflow at
`LABELLOOP_MLFLOW_TRACKING_URI`, the Triton model repository at `LABELLOOP_MODEL_REPOSITORY`)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.core import grpc_server, health, stream
from labelloop.core.answers import AnswerLedger
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.progress import ServingVersions
from labelloop.core.projects import ProjectStore
from labelloop.core.rules import RuleStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.thresholds import ThresholdStore
from labelloop.core.topics import ANNOTATIONS, LABELS
from labelloop.retraining.api import ModelApi
from labelloop.retraining.deploy import Deployer
from labelloop.retraining.families import ModelFamily, available_families, with_embedding_store
from labelloop.retraining.lifecycle import ModelLifecycle
from labelloop.retraining.posterior import PosteriorCalibration
from labelloop.retraining.registry import Registry
from labelloop.retraining.reviews import ReviewLedger
from labelloop.retraining.service import RetrainingService
from labelloop.retraining.settings import DEFAULT_FAMILIES, RetrainingSettings
from labelloop.retraining.training import Trainer
from labelloop.retraining.zero_shot import ZeroShotPrior
from labelloop.v1 import models_pb2_grpc

log = logging.getLogger("retraining")


def _with_shared_encoder(
    families: list[ModelFamily], client: Any, settings: RetrainingSettings, repo: Path
) -> tuple[list[ModelFamily], Callable[[list[str]], np.ndarray]]:
    """The encoder families keep embeddings in the shared embedding store, and Triton serves the
    shared encoder model the inference cascade asks for the embeddings of uncertain items.
    Returns the families and texts -> embeddings (store first) for judging cascade champions."""
    from labelloop.core.embeddings import EmbeddingStore
    from labelloop.retraining.encoder import ensure_encoder_model, shared_encoder

    encoder = shared_encoder()
    store = EmbeddingStore(client, settings.redis_key_prefix, encoder.encoder_id, encoder.encoder.dim)
    name = ensure_encoder_model(repo, settings.triton_grpc_url)
    log.info(
        "embedding store of encoder %s; Triton serves the shared encoder as %s", encoder.encoder_id, name
    )
    return with_embedding_store(families, store), lambda texts: encoder.embed(texts, store)


def _zero_shot_prior(settings: RetrainingSettings) -> ZeroShotPrior:
    """The zero-shot prior on the shared encoder (label texts are embedded in this process's
    cache only: they are not items, so the embedding store does not keep them)."""
    from labelloop.retraining.encoder import shared_encoder

    encoder = shared_encoder()
    log.info("zero-shot prior on for new text projects (T=%s)", settings.zero_shot_temperature)
    return ZeroShotPrior(
        lambda texts: encoder.embed(texts),
        encoder.encoder_id,
        encoder.encoder.dim,
        settings.zero_shot_temperature,
    )


def _rebuilt_or_raise(rebuilt: threading.Event) -> None:
    """The readiness check of the labeled sets: raises while they are still being rebuilt."""
    if not rebuilt.is_set():
        raise RuntimeError("rebuilding the labeled sets from the labels and annotations topics")


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    settings = load_settings_or_exit(RetrainingSettings)
    runtime = bootstrap("retraining", settings)
    # Not ready until the labeled sets are rebuilt from the topics (35 s for 96,000 labels of 82
    # projects on this VM): a stream started earlier trained its first model on 182 labels, not 50.
    rebuilt = threading.Event()
    runtime.health.add("labeled-sets", lambda: _rebuilt_or_raise(rebuilt))
    client = runtime.connect_redis(settings)
    runtime.health.add("triton", health.triton_check(settings.triton_grpc_url))
    runtime.health.add("mlflow", health.http_check(f"{settings.mlflow_tracking_uri.rstrip('/')}/health"))
    runtime.prepare_kafka(settings)
    if "LABELLOOP_CASCADE_COMBINE" in os.environ:
        # Session 20's setting, replaced by the two cascade families: say so rather than ignore it.
        log.warning(
            "LABELLOOP_CASCADE_COMBINE is no longer read: each training calibrates the cascade and "
            "cascade-replace families and serves the one admitting more; list one of them in "
            "LABELLOOP_FAMILIES to fix the combination"
        )
    available = available_families(settings.media_root)
    unknown = sorted(set(settings.families) - {f.name for f in available})
    if unknown and settings.families == DEFAULT_FAMILIES:
        log.warning(
            "model families %s are not available here (the encoder is built by `make setup`); training %s",
            ", ".join(unknown),
            ", ".join(f.name for f in available if f.name in settings.families),
        )
    elif unknown:
        raise SystemExit(
            f"LABELLOOP_FAMILIES: {', '.join(unknown)} not available here "
            f"(available: {', '.join(f.name for f in available)}; minilm-head needs `make setup`'s encoder)"
        )
    families = [f for f in available if not settings.families or f.name in settings.families]
    log.info("model families: %s", ", ".join(f.name for f in families))
    repo = Path(settings.model_repository)
    repo.mkdir(parents=True, exist_ok=True)
    embed = None
    prior = None
    if any(hasattr(f, "with_store") for f in families):
        families, embed = _with_shared_encoder(families, client, settings, repo)
        if settings.zero_shot:
            prior = _zero_shot_prior(settings)
    deployer = Deployer(
        repo, settings.triton_grpc_url, settings.load_timeout_s, settings.fault_pause_writing_version_s
    )
    producer = stream.EventProducer(settings.kafka_bootstrap, settings.topic_prefix, "retraining")
    projects = ProjectStore(client, settings.redis_key_prefix)
    registry = Registry(settings.mlflow_tracking_uri, settings.topic_prefix)
    answers = AnswerLedger(client, settings.redis_key_prefix)
    lifecycle = ModelLifecycle(
        settings,
        projects,
        registry,
        deployer,
        ThresholdStore(client, settings.redis_key_prefix, cache_s=0.0),
        ServingVersions(client, settings.redis_key_prefix),
        answers,
        producer,
    )
    trainer = Trainer(
        settings,
        projects,
        registry,
        lifecycle,
        producer,
        families,
        embed,
        PosteriorCalibration(
            LabelModelStore(client, settings.redis_key_prefix),
            RuleStore(client, settings.redis_key_prefix),
            settings.sources_min_judged,
        ),
        ReviewLedger(client, settings.redis_key_prefix),
    )
    service = RetrainingService(settings, projects, registry, lifecycle, trainer, answers, prior)
    service.rebuild()
    rebuilt.set()
    runtime.health.invalidate()  # a result cached during the rebuild would say NOT_SERVING
    server = grpc_server.build_server(
        "retraining",
        settings.grpc_port,
        [lambda s: models_pb2_grpc.add_ModelServiceServicer_to_server(ModelApi(service), s)],
        runtime.health,
        runtime.token_store(settings, client),
        tls=grpc_server.server_credentials(settings),
    )
    loop_producer = stream.EventProducer(
        settings.kafka_bootstrap,
        settings.topic_prefix,
        "retraining",
        transactional_id=settings.transactional_id("retraining"),
    )
    processor = stream.StreamProcessor(
        service="retraining",
        bootstrap=settings.kafka_bootstrap,
        prefix=settings.topic_prefix,
        inputs=[LABELS, ANNOTATIONS],
        group_id=f"{settings.topic_prefix}.retraining",
        handler=service.handle,
        # the loop's own (transactional) producer: `producer` also serves the training thread
        producer=loop_producer,
        poll_timeout_ms=settings.poll_timeout_ms,
        max_poll_records=settings.max_poll_records,
        on_idle=service.schedule,
        # After a crash the restarted process rejoins the group sooner (the consume loop is
        # light and trainings run in a worker thread, so heartbeats are never starved).
        consumer_config={"session_timeout_ms": 10_000},
    )
    processor.stop = runtime.stop
    try:
        processor.run()
    finally:
        server.stop(grace=5)
        service.close()
        loop_producer.close()
        producer.close()
    log.info("retraining stopped after %d events", processor.processed)


if __name__ == "__main__":
    main()
