"""`python -m labelloop.inference`: consumes `items`, calls Triton in micro-batches, produces
`predictions`. Env: the `LABELLOOP_*` variables of InferenceSettings."""

from __future__ import annotations

import logging

from labelloop.core import health, redis_store, stream
from labelloop.core.progress import ServingVersions
from labelloop.core.projects import ProjectStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.topics import ITEMS
from labelloop.inference.predictor import Predictor
from labelloop.inference.settings import InferenceSettings
from labelloop.inference.triton import TritonClassifier

log = logging.getLogger("inference")


def main() -> None:
    settings = load_settings_or_exit(InferenceSettings)
    runtime = bootstrap("inference", settings)
    client = redis_store.connect(settings.redis_url)
    runtime.health.add("redis", health.redis_check(client))
    runtime.health.add("kafka", health.kafka_check(settings.kafka_bootstrap))
    runtime.health.add("triton", health.triton_check(settings.triton_grpc_url))
    stream.ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)
    classifier = TritonClassifier(settings.triton_grpc_url, settings.triton_timeout_s, settings.model_check_s)
    predictor = Predictor(
        ProjectStore(client, settings.redis_key_prefix),
        classifier,
        ServingVersions(client, settings.redis_key_prefix),
        settings.max_batch_size,
    )
    producer = stream.EventProducer(settings.kafka_bootstrap, settings.topic_prefix, "inference")
    processor = stream.StreamProcessor(
        service="inference",
        bootstrap=settings.kafka_bootstrap,
        prefix=settings.topic_prefix,
        inputs=[ITEMS],
        group_id=f"{settings.topic_prefix}.inference",
        handler=predictor,
        producer=producer,
        poll_timeout_ms=settings.poll_timeout_ms,
        max_poll_records=settings.max_poll_records,
        batch_max_wait_ms=settings.max_wait_ms,
    )
    processor.stop = runtime.stop
    processor.run()
    producer.close()
    classifier.close()
    log.info("inference stopped after %d items", processor.processed)


if __name__ == "__main__":
    main()
