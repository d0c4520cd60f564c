"""`python -m labelloop.llm_source`: consumes `predictions`, asks an OpenAI-compatible LLM about
the items chosen by `LABELLOOP_LLM_ASK`, produces its votes on `votes`. Env: the `LABELLOOP_*`
variables of LlmSourceSettings.

It is a service of its own rather than a stage of inference or routing so that the LLM's
latency (seconds, retries, an outage) never sits on the path from items to labels: routing
decides without waiting for it, and this consumer's lag is the only thing a slow endpoint grows.
"""

from __future__ import annotations

import logging

from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.projects import ProjectStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.thresholds import ThresholdStore
from labelloop.core.topics import PREDICTIONS
from labelloop.llm_source.client import HourlyBudget, LlmClient, LlmConfig
from labelloop.llm_source.settings import LlmSourceSettings
from labelloop.llm_source.voter import LlmVoter

log = logging.getLogger("llm_source")


def main() -> None:
    settings = load_settings_or_exit(LlmSourceSettings)
    runtime = bootstrap("llm_source", settings)
    client = runtime.connect_redis(settings)
    runtime.prepare_kafka(settings)
    config = LlmConfig(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        backoff_s=settings.llm_backoff_s,
        max_concurrency=settings.llm_max_concurrency,
    )
    llm = LlmClient(config, HourlyBudget(client, settings.redis_key_prefix, settings.llm_calls_per_hour))
    voter = LlmVoter(
        ProjectStore(client, settings.redis_key_prefix),
        ThresholdStore(client, settings.redis_key_prefix),
        llm,
        settings.llm_ask,
        f"llm:{settings.llm_model}",
        settings.llm_max_concurrency,
        LabelModelStore(client, settings.redis_key_prefix),
    )
    log.info(
        "llm source: asking about %s items of %s at %s", settings.llm_ask, settings.llm_model, config.base_url
    )
    processor = runtime.processor(settings, [PREDICTIONS], voter)
    processor.run()
    processor.producer.close()
    voter.close()
    log.info("llm source stopped after %d predictions", processor.processed)


if __name__ == "__main__":
    main()
