"""Labelloop's own processes that `make up` starts after the infrastructure.

A `ServiceSpec` names a module run as `python -m <module>`; `LocalStack` gives it the stack's
connection settings as `LABELLOOP_*` environment variables (see `LocalStack.service_env`),
a log and pid file under `<stack_dir>/<name>/`, and the same start/stop/status handling as the
infrastructure. `SERVICES` is the list `python -m labelloop.stack up` uses.
"""

from __future__ import annotations

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


SERVICES: tuple[ServiceSpec, ...] = ()
"""The services `make up` starts, in order, after Kafka, Redis, Triton and MLflow (none yet)."""
