"""`python -m labelloop.human_tasks`: fills the per-project queues from `tasks` (and withdraws
waiting tasks a newly deployed model auto-labels, see handler.py), serves the annotator gRPC API,
re-queues expired leases, and exports queue gauges.
Env: the `LABELLOOP_*` variables of HumanTasksSettings."""

from __future__ import annotations

import logging
import threading

from labelloop.core import grpc_server, stream
from labelloop.core.final_labels import FinalLabelWriter
from labelloop.core.label_log import PublishedAnswers, PublishedLabels
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.media import MediaStore
from labelloop.core.projects import ProjectStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.topics import MODELS, TASKS
from labelloop.human_tasks.agreement import AgreementStore
from labelloop.human_tasks.api import HumanTaskApi
from labelloop.human_tasks.handler import TaskHandler
from labelloop.human_tasks.queue import TaskQueue
from labelloop.human_tasks.settings import HumanTasksSettings
from labelloop.human_tasks.upkeep import keep_queues
from labelloop.v1 import human_tasks_pb2_grpc

log = logging.getLogger("human_tasks")


def main() -> None:
    settings = load_settings_or_exit(HumanTasksSettings)
    runtime = bootstrap("human_tasks", settings)
    client = runtime.connect_redis(settings)
    runtime.prepare_kafka(settings)
    queue = TaskQueue(client, settings.redis_key_prefix, settings.lease_ttl_s, settings.lease_scan)
    projects = ProjectStore(client, settings.redis_key_prefix)
    # the fence checks the log before publishing again a decision whose confirmation was lost
    published = PublishedLabels(settings.kafka_bootstrap, settings.topic_prefix)
    # an answer's events are published in one transaction (api.HumanTaskApi._publishing)
    api_producer = stream.EventProducer(
        settings.kafka_bootstrap,
        settings.topic_prefix,
        "human_tasks",
        transactional_id=settings.transactional_id("human_tasks.answers"),
    )
    api = HumanTaskApi(
        queue,
        projects,
        FinalLabelWriter(client, settings.redis_key_prefix, published),
        api_producer,
        LabelModelStore(client, settings.redis_key_prefix),
        AgreementStore(client, settings.redis_key_prefix),
        MediaStore(settings.media_root, settings.max_media_bytes),
        PublishedAnswers(settings.kafka_bootstrap, settings.topic_prefix),
    )
    server = grpc_server.build_server(
        "human_tasks",
        settings.grpc_port,
        [lambda s: human_tasks_pb2_grpc.add_HumanTaskServiceServicer_to_server(api, s)],
        runtime.health,
        runtime.token_store(settings, client),
        tls=grpc_server.server_credentials(settings),
    )
    upkeep = threading.Thread(
        target=keep_queues,
        args=(queue, projects, api, runtime.stop, settings.reap_interval_s, settings.republish_after_s),
        daemon=True,
    )
    upkeep.start()

    handler = TaskHandler(
        queue, FinalLabelWriter(client, settings.redis_key_prefix, published), settings.rescore_limit
    )
    processor = runtime.processor(settings, [TASKS, MODELS], handler)
    processor.run()
    server.stop(grace=settings.shutdown_timeout_s).wait()
    api_producer.close()
    processor.producer.close()
    log.info("human_tasks stopped")


if __name__ == "__main__":
    main()
