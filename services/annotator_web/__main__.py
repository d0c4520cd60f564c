"""`python -m labelloop.annotator_web`: the annotator page and its JSON API on
`LABELLOOP_WEB_HOST:LABELLOOP_WEB_PORT` (default 127.0.0.1:8080), with /metrics, /healthz and
/readyz on `LABELLOOP_METRICS_PORT` (9106). Ready when human-tasks and ingest answer their
standard gRPC health checks. Env: the `LABELLOOP_*` variables of WebSettings."""

from __future__ import annotations

import logging

import grpc
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labelloop.annotator_web.app import create_app
from labelloop.annotator_web.backend import Backend
from labelloop.annotator_web.settings import WebSettings
from labelloop.core.grpc_client import ClientTls
from labelloop.core.health import Check
from labelloop.core.service import bootstrap, load_settings_or_exit

log = logging.getLogger("annotator_web")


def grpc_health_check(address: str, tls: ClientTls) -> Check:
    """A check that the gRPC server at `address` reports SERVING within 3 s."""

    def check() -> None:
        credentials = tls.credentials()
        opened = (
            grpc.insecure_channel(address)
            if credentials is None
            else grpc.secure_channel(address, credentials)
        )
        with opened as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(
                f"{address} reports {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}"
            )

    return check


def main() -> None:
    settings = load_settings_or_exit(WebSettings)
    runtime = bootstrap("annotator_web", settings)
    tls = settings.grpc_tls()
    runtime.health.add("human_tasks", grpc_health_check(settings.human_tasks_addr, tls))
    runtime.health.add("ingest", grpc_health_check(settings.ingest_addr, tls))
    if not settings.session_secret:
        log.warning("LABELLOOP_SESSION_SECRET is unset: sessions end when this process restarts")
    backend = Backend(settings.human_tasks_addr, settings.ingest_addr, settings.grpc_timeout_s, tls)
    app = create_app(settings, backend, runtime.health)
    config = uvicorn.Config(
        app,
        host=settings.web_host,
        port=settings.web_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        proxy_headers=True,
    )
    uvicorn.Server(config).run()  # returns on SIGTERM/SIGINT after in-flight requests finish
    runtime.health.alive = False
    log.info("annotator_web stopped")


if __name__ == "__main__":
    main()
