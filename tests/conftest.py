"""Shared fixtures: the real local stack, started once per pytest run, and per-test prefixes.

- `stack` (session): Kafka, Redis, Triton and MLflow as real processes on free ports in a
  temporary run directory, so a test run never collides with `make up` or another test run.
  Started lazily (only when a test asks for it, so unit tests never start it) and stopped at
  the end of the run, leaving no process behind.
- `topic_prefix`, `redis_prefix` (function): unique per test, so tests don't see each other's data.
Everything under tests/integration/ is marked `integration`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import private_stack_settings

from labelloop.core import kafka_clients
from labelloop.stack import LocalStack
from labelloop.stack.kafka_broker import fetch_kafka_jars
from labelloop.stack.process import group_members

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls from MLflow clients


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole local stack, started once for the run; stopped (no process left) at the end."""
    settings = private_stack_settings(tmp_path_factory.mktemp("stack"))
    fetch_kafka_jars(Path(settings.kafka_libs_dir), say=lambda _line: None)
    local = LocalStack(settings, services=(), say=None)
    try:
        local.up()
    except BaseException:
        local.down()
        raise
    pids = {c.name: c.process.running_pid() for c in local.components}
    kafka_clients.configure(local.kafka_security)  # this process's clients authenticate as the services do
    yield local
    kafka_clients.configure(None)
    local.down()
    leftovers = {name: group_members(pid) for name, pid in pids.items() if pid and group_members(pid)}
    assert not leftovers, f"processes left behind after stack.down(): {leftovers}"


def _slug(request: pytest.FixtureRequest, limit: int = 40) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-").lower()[:limit]


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A Kafka topic-name prefix unique to this test (valid topic characters only)."""
    return f"t-{_slug(request)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A Redis key prefix unique to this test."""
    return f"t:{_slug(request)}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def running_services(stack, tmp_path, topic_prefix, redis_prefix) -> Iterator[dict[str, str]]:
    """The five services running as processes against the test stack, with a model loaded in
    Triton (its `nv_*` metrics appear only then): service name -> metrics URL, plus "triton"."""
    from models import serve, train_tfidf
    from running import SERVICES, RunningServices

    model = f"metrics-{uuid.uuid4().hex[:8]}"
    serve(
        stack,
        model,
        train_tfidf(["good day", "bad day", "fine", "awful"], ["pos", "neg", "pos", "neg"]),
        ["neg", "pos"],
    )
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix)
    services.start(SERVICES)
    try:
        urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in services.ports.items()}
        urls["triton"] = stack.triton_metrics_url
        yield urls
    finally:
        services.stop()
