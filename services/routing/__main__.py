"""`python -m labelloop.routing`: consumes `predictions` (and `models`), produces auto labels to
`labels` and human work to `tasks`; consumes `votes` to route an item again when a late vote
(the LLM's) counts. Env: the `LABELLOOP_*` variables of RoutingSettings."""

from __future__ import annotations

import logging

from labelloop.core.final_labels import FinalLabelWriter
from labelloop.core.label_log import PublishedLabels
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.projects import ProjectStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.thresholds import ThresholdStore
from labelloop.core.topics import MODELS, PREDICTIONS, VOTES
from labelloop.routing.prior_order import PriorRanks
from labelloop.routing.router import Router
from labelloop.routing.settings import RoutingSettings

log = logging.getLogger("routing")


def main() -> None:
    settings = load_settings_or_exit(RoutingSettings)
    runtime = bootstrap("routing", settings)
    client = runtime.connect_redis(settings)
    runtime.prepare_kafka(settings)
    router = Router(
        ProjectStore(client, settings.redis_key_prefix),
        ThresholdStore(client, settings.redis_key_prefix),
        FinalLabelWriter(
            client,
            settings.redis_key_prefix,
            PublishedLabels(settings.kafka_bootstrap, settings.topic_prefix),
        ),
        settings.audit_seed,
        LabelModelStore(client, settings.redis_key_prefix),
        settings.label_model_min_judged,
        PriorRanks(client, settings.redis_key_prefix),
    )
    processor = runtime.processor(settings, [PREDICTIONS, MODELS, VOTES], router)
    processor.run()
    processor.producer.close()
    log.info("routing stopped after %d events", processor.processed)


if __name__ == "__main__":
    main()
