"""`python -m labelloop.inference`: consumes `items`, calls Triton in micro-batches, produces
`predictions` with the votes of each project's rules. Env: the `LABELLOOP_*` variables of InferenceSettings."""

from __future__ import annotations

import logging

from labelloop.core import health
from labelloop.core.projects import ProjectStore
from labelloop.core.rules import RuleStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.topics import ITEMS
from labelloop.core.triton_client import TritonClassifier
from labelloop.inference.cascade import EncoderStage
from labelloop.inference.predictor import Predictor
from labelloop.inference.settings import InferenceSettings

log = logging.getLogger("inference")


def main() -> None:
    settings = load_settings_or_exit(InferenceSettings)
    runtime = bootstrap("inference", settings)
    client = runtime.connect_redis(settings)
    runtime.health.add("triton", health.triton_check(settings.triton_grpc_url))
    runtime.prepare_kafka(settings)
    classifier = TritonClassifier(settings.triton_grpc_url, settings.triton_timeout_s, settings.model_check_s)
    cascade = (
        EncoderStage(
            classifier, client, settings.redis_key_prefix, settings.encoder_model, settings.encoder_batch_size
        )
        if settings.encoder_model
        else None
    )
    predictor = Predictor(
        ProjectStore(client, settings.redis_key_prefix),
        classifier,
        settings.max_batch_size,
        cascade,
        RuleStore(client, settings.redis_key_prefix),
    )
    processor = runtime.processor(settings, [ITEMS], predictor, batch_max_wait_ms=settings.max_wait_ms)
    processor.run()
    processor.producer.close()
    classifier.close()
    log.info("inference stopped after %d items", processor.processed)


if __name__ == "__main__":
    main()
