"""What every service process does at start: logging, settings, the metrics/health HTTP port,
signal handling. Each service's `__main__` calls `bootstrap(...)` then runs its loop until the
stop flag is set."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from labelloop.core import grpc_server, kafka_clients, metrics, redis_store
from labelloop.core import health as checks
from labelloop.core.errors import DependencyUnavailable
from labelloop.core.health import Health
from labelloop.core.settings import CommonSettings, SettingsError, load
from labelloop.core.stream import EventProducer, Handler, StopFlag, StreamProcessor
from labelloop.core.tokens import TokenStore
from labelloop.core.topics import Topic

S = TypeVar("S", bound=CommonSettings)


@dataclass
class Runtime:
    """A started service's shared pieces."""

    name: str
    health: Health
    stop: StopFlag

    def connect_redis(self, settings: CommonSettings) -> redis.Redis:
        """The Redis client, with its health check registered. Exits with status 2 when Redis
        refuses the configured password (a Redis that is down is waited for instead)."""
        client = redis_store.connect(settings.redis_url, password=settings.redis_secret())
        try:
            redis_store.check_credentials(client, settings.redis_url)
        except redis_store.BadCredentials as exc:
            logging.getLogger(self.name).error("%s", exc)
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        self.health.add("redis", checks.redis_check(client))
        return client

    def token_store(self, settings: CommonSettings, client: redis.Redis) -> TokenStore:
        """The token store the gRPC server authenticates calls with; registers the bootstrap
        admin token (`LABELLOOP_ADMIN_TOKEN`) if one is set, waiting for Redis if it is down."""
        store = TokenStore(client, settings.redis_key_prefix)
        while settings.admin_token:
            try:
                store.ensure_token(settings.admin_token, "admin")
                break
            except DependencyUnavailable as exc:
                logging.getLogger(self.name).warning("registering the admin token: %s; retrying", exc)
                if self.stop.wait(2.0):
                    break
        return store

    def prepare_kafka(self, settings: CommonSettings) -> None:
        """Register the Kafka health check and make sure every topic exists. Exits with status 2
        when the brokers refuse the configured credentials."""
        self.health.add("kafka", checks.kafka_check(settings.kafka_bootstrap))
        try:
            kafka_clients.check_credentials(settings.kafka_bootstrap)
        except kafka_clients.BadCredentials as exc:
            logging.getLogger(self.name).error("%s", exc)
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        ensure_topics_of(settings)

    def processor(
        self, settings: CommonSettings, inputs: Sequence[Topic], handler: Handler, **options: Any
    ) -> StreamProcessor:
        """This service's consume loop on `inputs` (group "<prefix>.<service>"), with its own
        producer (transactional unless `LABELLOOP_KAFKA_TRANSACTIONS=false`), stopped by the
        service's stop flag."""
        producer = EventProducer(
            settings.kafka_bootstrap,
            settings.topic_prefix,
            self.name,
            transactional_id=settings.transactional_id(self.name),
        )
        processor = StreamProcessor(
            service=self.name,
            bootstrap=settings.kafka_bootstrap,
            prefix=settings.topic_prefix,
            inputs=inputs,
            group_id=f"{settings.topic_prefix}.{self.name}",
            handler=handler,
            producer=producer,
            poll_timeout_ms=settings.poll_timeout_ms,
            max_poll_records=settings.max_poll_records,
            **options,
        )
        processor.stop = self.stop
        return processor


def ensure_topics_of(settings: CommonSettings) -> None:
    """Create the service's topics with the configured replication factor and min.insync.replicas."""
    kafka_clients.ensure_topics(
        settings.kafka_bootstrap,
        settings.topic_prefix,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
    )


def configure_logging(level: str) -> None:
    """One log format for every service: time, level, logger, message."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load_settings_or_exit(cls: type[S]) -> S:
    """Settings from the environment (the Kafka security among them, set for every client of
    the process; the gRPC TLS files checked); on a bad value print the error and exit with status 2."""
    try:
        settings = load(cls)
        kafka_clients.configure(settings.kafka_security())
        grpc_server.server_credentials(settings)  # TLS files readable (names the variable otherwise)
        return settings
    except (SettingsError, kafka_clients.KafkaConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def bootstrap(name: str, settings: CommonSettings) -> Runtime:
    """Configure logging, serve /metrics, /healthz, /readyz on the metrics port, and route
    SIGTERM/SIGINT to the returned stop flag. SIGUSR1 writes every thread's stack to stderr (the
    service's log) and changes nothing else: `kill -USR1 <pid>` shows where a stuck loop waits."""
    configure_logging(settings.log_level)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    health = Health(name)
    metrics.BUILD_INFO.info({"service": name, "version": _version()})
    if settings.metrics_port:
        health.serve_http(settings.metrics_port)
    stop = StopFlag()
    stop.install_signal_handlers()
    logging.getLogger(name).info("%s starting (metrics port %s)", name, settings.metrics_port or "off")
    return Runtime(name, health, stop)


def _version() -> str:
    from labelloop import __version__

    return __version__
