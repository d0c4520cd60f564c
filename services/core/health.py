"""Honest health: named dependency checks, an HTTP endpoint, and the gRPC health service.

`Health` holds one check per dependency (Kafka, Redis, Triton, MLflow...). `serve_http(port)`
serves, on the metrics port (`LABELLOOP_METRICS_PORT`):
- `/metrics`  Prometheus text;
- `/healthz`  liveness: 200 while the process runs its loop;
- `/readyz`   readiness: 200 only when every dependency check passes, else 503 with the failures.
`bind_grpc(health_servicer)` keeps the standard gRPC health service in step (SERVING /
NOT_SERVING) from a background thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from labelloop.core import metrics

log = logging.getLogger(__name__)

Check = Callable[[], None]  # raises when the dependency is not usable


class Health:
    """The dependency checks of one service, evaluated with a short cache."""

    def __init__(self, service: str, cache_s: float = 1.0) -> None:
        self.service = service
        self.cache_s = cache_s
        self._checks: dict[str, Check] = {}
        self._last: tuple[float, dict[str, str | None]] = (0.0, {})
        self._lock = threading.Lock()
        self.alive = True

    def add(self, dependency: str, check: Check) -> None:
        """Register a check: a callable that raises when `dependency` is unusable."""
        self._checks[dependency] = check

    def invalidate(self) -> None:
        """Forget the cached results, so the next `results()` runs every check (after a state
        change that a check reads, e.g. a rebuild finished: the gRPC status follows at once)."""
        with self._lock:
            self._last = (0.0, {})

    def results(self) -> dict[str, str | None]:
        """Each dependency -> None when healthy, else the error text."""
        with self._lock:
            stamp, cached = self._last
            if time.monotonic() - stamp < self.cache_s and set(cached) == set(self._checks):
                return dict(cached)
            out: dict[str, str | None] = {}
            for name, check in list(self._checks.items()):
                try:
                    check()
                    out[name] = None
                except Exception as exc:
                    out[name] = f"{type(exc).__name__}: {exc}"
                metrics.DEPENDENCY_UP.labels(self.service, name).set(0 if out[name] else 1)
            self._last = (time.monotonic(), out)
            return dict(out)

    def ready(self) -> bool:
        """True when every dependency is healthy."""
        return all(v is None for v in self.results().values())

    def serve_http(self, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
        """Serve /metrics, /healthz and /readyz on `port` in a daemon thread."""
        health = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    code = 200 if health.alive else 503
                    self._json(code, {"service": health.service, "alive": health.alive})
                elif self.path.startswith("/readyz"):
                    results = health.results()
                    ok = all(v is None for v in results.values())
                    body = {"service": health.service, "ready": ok, "dependencies": results}
                    self._json(200 if ok else 503, body)
                else:
                    self._json(404, {"error": f"no such path {self.path}"})

            def _json(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, payload: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), _Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
        return server

    def bind_grpc(self, servicer: Any, interval_s: float = 2.0) -> threading.Thread:
        """Keep a grpc_health HealthServicer's overall status in step with `ready()`."""
        from grpc_health.v1 import health_pb2

        def loop() -> None:
            while self.alive:
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if self.ready()
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                servicer.set("", status)
                time.sleep(interval_s)

        thread = threading.Thread(target=loop, name="health-grpc", daemon=True)
        thread.start()
        return thread


def kafka_check(bootstrap: str) -> Check:
    """A check that the Kafka cluster answers a DescribeCluster request within 3 s (one admin
    client, reused: librdkafka reconnects by itself)."""
    from labelloop.core import kafka_clients

    holder: dict[str, Any] = {}
    lock = threading.Lock()

    def check() -> None:
        with lock:
            if "admin" not in holder:
                holder["admin"] = kafka_clients.admin(bootstrap, "labelloop-health")
            if not kafka_clients.cluster_broker_ports(holder["admin"], timeout_s=3):
                raise RuntimeError("the Kafka cluster reports no brokers")

    return check


def redis_check(client: Any) -> Check:
    """A check that Redis answers PING."""

    def check() -> None:
        client.ping()

    return check


def triton_check(url: str) -> Check:
    """A check that Triton reports itself ready."""
    import tritonclient.grpc as triton

    def check() -> None:
        client = triton.InferenceServerClient(url)
        try:
            if not client.is_server_ready(client_timeout=3):
                raise RuntimeError(f"Triton at {url} is not ready")
        finally:
            client.close()

    return check


def http_check(url: str) -> Check:
    """A check that an HTTP endpoint answers 2xx (e.g. MLflow's /health)."""
    import urllib.request

    def check() -> None:
        with urllib.request.urlopen(url, timeout=3) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"{url} answered {resp.status}")

    return check
