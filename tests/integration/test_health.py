"""Health tells the truth: a stopped dependency makes /readyz fail and the gRPC health service
report NOT_SERVING; both recover when it is back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import free_port, private_stack_settings, wait_until

from labelloop.core import grpc_server, redis_store
from labelloop.core.health import Health, redis_check
from labelloop.core.tokens import TokenStore
from labelloop.stack import LocalStack


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def grpc_status(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            .status
        )


def test_a_stopped_dependency_is_reported_not_serving(tmp_path) -> None:
    redis_only = LocalStack(private_stack_settings(tmp_path), only={"redis"}, services=(), say=None)
    redis_only.up()
    try:
        health = Health("probe", cache_s=0)
        health.add(
            "redis",
            redis_check(
                redis_store.connect(redis_only.redis_url, redis_only.redis_password, socket_connect_timeout=1)
            ),
        )
        http_port, grpc_port = free_port(), free_port()
        server_http = health.serve_http(http_port)
        tokens = TokenStore(redis_store.connect(redis_only.redis_url, redis_only.redis_password), "t:health")
        server = grpc_server.build_server("probe", grpc_port, [], health, tokens)
        try:
            assert readyz(http_port)[0] == 200
            wait_until(lambda: grpc_status(grpc_port) == health_pb2.HealthCheckResponse.SERVING, 20)

            redis_only.down()
            code, body = readyz(http_port)
            assert code == 503
            assert body["dependencies"]["redis"], "the failing dependency is named with its error"
            wait_until(lambda: grpc_status(grpc_port) == health_pb2.HealthCheckResponse.NOT_SERVING, 20)
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5) as resp:
                assert resp.status == 200, "liveness stays up while a dependency is down"

            redis_only.up()
            wait_until(lambda: readyz(http_port)[0] == 200, 20)
            wait_until(lambda: grpc_status(grpc_port) == health_pb2.HealthCheckResponse.SERVING, 20)
        finally:
            health.alive = False
            server.stop(grace=None)
            server_http.shutdown()
            server_http.server_close()
    finally:
        redis_only.down()
