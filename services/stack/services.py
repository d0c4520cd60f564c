"""Labelloop's own processes that `make up` starts after the infrastructure.

A `ServiceSpec` names a module run as `python -m <module>`; `LocalStack` gives it the stack's
connection settings as `LABELLOOP_*` environment variables (see `LocalStack.service_env`),
a log and pid file under `<stack_dir>/<name>/`, and the same start/stop/status handling as the
infrastructure. `SERVICES` is the list `python -m labelloop.stack up` uses.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from labelloop.stack.process import ReadyCheck


@dataclass(frozen=True)
class ServiceSpec:
    """One Labelloop service process.

    `ready` builds the readiness check from the service's environment (e.g. probe the health
    endpoint on `env["LABELLOOP_METRICS_PORT"]`); None means "ready once started and alive".
    `env` adds or overrides variables on top of `LocalStack.service_env()`.
    """

    name: str
    module: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    ready: Callable[[Mapping[str, str]], ReadyCheck] | None = None

    def with_env(self, env: Mapping[str, str]) -> ServiceSpec:
        """The same service with `env` added to its variables."""
        return ServiceSpec(self.name, self.module, self.args, {**self.env, **env}, self.ports, self.ready)


def http_ready(metrics_port: int) -> Callable[[Mapping[str, str]], ReadyCheck]:
    """Readiness: the service's `/readyz` answers 200 (all its dependencies are up)."""

    def build(env: Mapping[str, str]) -> ReadyCheck:
        port = int(env.get("LABELLOOP_METRICS_PORT", metrics_port))

        def check() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as resp:
                return resp.status == 200

        return check

    return build


def _spec(name: str, metrics_port: int, grpc_port: int | None = None) -> ServiceSpec:
    env = {"LABELLOOP_METRICS_PORT": str(metrics_port)}
    ports: tuple[int, ...] = (metrics_port,)
    if grpc_port is not None:
        env["LABELLOOP_GRPC_PORT"] = str(grpc_port)
        ports = (grpc_port, metrics_port)
    return ServiceSpec(name, f"labelloop.{name}", env=env, ports=ports, ready=http_ready(metrics_port))


SERVICES: tuple[ServiceSpec, ...] = (
    _spec("ingest", 9101, 50051),
    _spec("inference", 9102),
    _spec("routing", 9103),
    _spec("human_tasks", 9104, 50052),
    _spec("retraining", 9105, 50053),
    ServiceSpec(
        "annotator_web",
        "labelloop.annotator_web",
        env={"LABELLOOP_METRICS_PORT": "9106"},
        ports=(int(os.environ.get("LABELLOOP_WEB_PORT", "8080")), 9106),
        ready=http_ready(9106),
    ),
)
"""The services `make up` starts, in order, after Kafka, Redis, Triton and MLflow, on their
default ports (gRPC: ingest 50051 with the admin API, human_tasks 50052, retraining 50053 with
the model API; metrics and health: 9101-9106; the annotator web app on 127.0.0.1:8080, or
`LABELLOOP_WEB_PORT`)."""

LLM_SOURCE = _spec("llm_source", 9107)
"""The LLM source (metrics 9107): not in `SERVICES`, since it needs an endpoint
(`LABELLOOP_LLM_BASE_URL`, `LABELLOOP_LLM_MODEL`); `labelloop bench --llm-url/--llm-sim-accuracy`
starts it (bench/llm.py), and `make down` stops it when it runs."""
