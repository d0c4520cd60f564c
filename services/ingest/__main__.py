"""`python -m labelloop.ingest`: the client-facing gRPC API (IngestService + admin ProjectService
+ TokenService + RuleService).

Env: the `LABELLOOP_*` variables of IngestSettings (labelloop.ingest.settings).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from labelloop.core import grpc_server, kafka_clients, stream
from labelloop.core.errors import DependencyUnavailable
from labelloop.core.media import MediaStore
from labelloop.core.progress import Progress
from labelloop.core.projects import ProjectStore
from labelloop.core.rules import RuleStore
from labelloop.core.service import bootstrap, load_settings_or_exit
from labelloop.core.topics import DEAD_LETTERS
from labelloop.ingest.api import IngestApi, ProjectApi
from labelloop.ingest.ingestor import IngestLimits, Ingestor
from labelloop.ingest.rule_api import RuleApi
from labelloop.ingest.settings import IngestSettings
from labelloop.ingest.token_api import TokenApi
from labelloop.v1 import admin_pb2_grpc, auth_pb2_grpc, ingest_pb2_grpc, rules_pb2_grpc

log = logging.getLogger("ingest")


class DeadLetterCounter:
    """Counts records in the dead-letter topic (end offsets minus start offsets), for
    GetProjectStatus. One reader, kept open and used by one gRPC thread at a time (a status poll
    would otherwise open and authenticate a Kafka connection per call); after an error the next
    call opens a new one. A call that finds another one waiting on Kafka for longer than
    `busy_timeout_s` fails as Kafka unavailable instead of queueing, so status polls during an
    outage cannot take every gRPC thread. `close()` at shutdown."""

    def __init__(self, bootstrap_servers: str, prefix: str, busy_timeout_s: float = 10.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = DEAD_LETTERS.name(prefix)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._consumer: Any = None

    def __call__(self) -> int:
        if not self._lock.acquire(timeout=self.busy_timeout_s):
            raise DependencyUnavailable(
                "kafka", f"the dead-letter count: another call waited on Kafka for {self.busy_timeout_s:.0f}s"
            )
        try:
            if self._consumer is None:
                self._consumer = kafka_clients.reader(self.bootstrap_servers, "labelloop-ingest-dead-letters")
            try:
                marks = kafka_clients.watermarks(self._consumer, self.topic)
            except BaseException:
                self._close()
                raise
        finally:
            self._lock.release()
        return sum(high - low for low, high in marks.values())

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()


def main() -> None:
    settings = load_settings_or_exit(IngestSettings)
    runtime = bootstrap("ingest", settings)
    client = runtime.connect_redis(settings)
    runtime.prepare_kafka(settings)
    producer = stream.EventProducer(settings.kafka_bootstrap, settings.topic_prefix, "ingest")
    projects = ProjectStore(client, settings.redis_key_prefix)
    progress = Progress(client, settings.redis_key_prefix)
    limits = IngestLimits(settings.max_text_bytes, settings.max_metadata_bytes, settings.pending_ttl_s)
    media = MediaStore(settings.media_root, settings.max_media_bytes)
    ingestor = Ingestor(projects, progress, client, producer, limits, media)
    ingest_api = IngestApi(ingestor, settings.max_batch_items)
    dead_letters = DeadLetterCounter(settings.kafka_bootstrap, settings.topic_prefix)
    project_api = ProjectApi(projects, progress, client, settings.redis_key_prefix, dead_letters)
    rule_api = RuleApi(projects, RuleStore(client, settings.redis_key_prefix))
    tokens = runtime.token_store(settings, client)
    server = grpc_server.build_server(
        "ingest",
        settings.grpc_port,
        [
            lambda s: ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest_api, s),
            lambda s: admin_pb2_grpc.add_ProjectServiceServicer_to_server(project_api, s),
            lambda s: auth_pb2_grpc.add_TokenServiceServicer_to_server(TokenApi(tokens), s),
            lambda s: rules_pb2_grpc.add_RuleServiceServicer_to_server(rule_api, s),
        ],
        runtime.health,
        tokens,
        tls=grpc_server.server_credentials(settings),
    )
    while not runtime.stop.wait(1.0):
        pass
    log.info("ingest stopping: draining gRPC calls")
    server.stop(grace=settings.shutdown_timeout_s).wait()
    dead_letters.close()
    producer.close()
    runtime.health.alive = False
    log.info("ingest stopped")


if __name__ == "__main__":
    main()
