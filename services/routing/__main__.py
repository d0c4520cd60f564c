"""`python -m labelloop.routing`: consumes `predictions` (and `models`), produces auto labels to
`labels` and human work to `tasks`. Env: the `LABELLOOP_*` variables of RoutingSettings."""

from __future__ import annotations

import logging

from labelloop.core import health, redis_store, stream
from labelloop.core.progress import Progress
from labelloop.core.projects import ProjectStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.thresholds import ThresholdStore
from labelloop.core.topics import MODELS, PREDICTIONS
from labelloop.routing.router import Router
from labelloop.routing.settings import RoutingSettings

log = logging.getLogger("routing")


def main() -> None:
    settings = load_settings_or_exit(RoutingSettings)
    runtime = bootstrap("routing", settings)
    client = redis_store.connect(settings.redis_url)
    runtime.health.add("redis", health.redis_check(client))
    runtime.health.add("kafka", health.kafka_check(settings.kafka_bootstrap))
    stream.ensure_topics(settings.kafka_bootstrap, settings.topic_prefix)
    router = Router(
        ProjectStore(client, settings.redis_key_prefix),
        ThresholdStore(client, settings.redis_key_prefix),
        Progress(client, settings.redis_key_prefix),
        settings.audit_seed,
    )
    producer = stream.EventProducer(settings.kafka_bootstrap, settings.topic_prefix, "routing")
    processor = stream.StreamProcessor(
        service="routing",
        bootstrap=settings.kafka_bootstrap,
        prefix=settings.topic_prefix,
        inputs=[PREDICTIONS, MODELS],
        group_id=f"{settings.topic_prefix}.routing",
        handler=router,
        producer=producer,
        poll_timeout_ms=settings.poll_timeout_ms,
        max_poll_records=settings.max_poll_records,
    )
    processor.stop = runtime.stop
    processor.run()
    producer.close()
    log.info("routing stopped after %d events", processor.processed)


if __name__ == "__main__":
    main()
