"""The local stack: Kafka, Redis, Triton and MLflow as real processes, then Labelloop's services.

`LocalStack(settings)` is what `python -m labelloop.stack up|down|status` (and so `make up`) and
the test fixtures use. `up()` starts the infrastructure in parallel and waits until each piece
is ready, then the services in order; it is idempotent (healthy processes are left alone).
`down()` stops everything it manages and leaves no process behind. All state lives under
`stack_dir`: `<stack_dir>/<component>/` holds each component's data, log and pid file, and
`<stack_dir>/admin.token` the stack's admin API token and `<stack_dir>/redis.password` its
Redis password (written once, mode 0600; see `labelloop.stack.secrets`): the services get them
as `LABELLOOP_ADMIN_TOKEN` and `LABELLOOP_REDIS_PASSWORD`; the CLI, the bench and the demo read
the files.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from labelloop.core.settings import env_name, load
from labelloop.core.tokens import new_secret
from labelloop.stack.kafka_broker import KafkaBroker
from labelloop.stack.mlflow_server import MlflowServer
from labelloop.stack.process import ManagedProcess, ProcessStatus, StackError, StartResult
from labelloop.stack.redis_server import RedisServer
from labelloop.stack.secrets import stack_secret
from labelloop.stack.services import LLM_SOURCE, SERVICES, ServiceSpec
from labelloop.stack.settings import StackSettings
from labelloop.stack.triton_server import TritonServer

INFRASTRUCTURE = ("kafka", "redis", "triton", "mlflow")


class Component(Protocol):
    """A named piece of the stack backed by one `ManagedProcess`."""

    name: str
    process: ManagedProcess

    @property
    def endpoint(self) -> str: ...


@dataclass
class ServiceProcess:
    """A Labelloop service started by the stack (see `labelloop.stack.services`)."""

    name: str
    process: ManagedProcess
    endpoint: str


def _always_ready() -> bool:
    return True


class LocalStack:
    """The local stack described by `settings` (default: `StackSettings` from `LABELLOOP_*`).

    `only` restricts it to some of `INFRASTRUCTURE` (e.g. `{"redis"}` for a cheap stack);
    `services` defaults to `labelloop.stack.services.SERVICES`. `say` receives progress lines.
    Connection details: `bootstrap_servers`, `redis_url`, `triton_grpc_url`, `triton_http_url`,
    `triton_metrics_url`, `mlflow_uri`, `model_repository`, and `service_env()` for processes.
    """

    def __init__(
        self,
        settings: StackSettings | None = None,
        *,
        only: Collection[str] | None = None,
        services: Sequence[ServiceSpec] | None = None,
        say: Callable[[str], None] | None = print,
    ) -> None:
        self.settings = settings if settings is not None else load(StackSettings)
        unknown = set(only or ()) - set(INFRASTRUCTURE)
        if unknown:
            raise ValueError(f"unknown component(s) {sorted(unknown)}; choose from {INFRASTRUCTURE}")
        self.stack_dir = Path(self.settings.stack_dir).resolve()
        repo = self.settings.model_repository or str(self.stack_dir / "model-repository")
        self.model_repository = Path(repo).resolve()
        self.kafka = KafkaBroker(self.settings, self.stack_dir, Path(self.settings.kafka_libs_dir).resolve())
        self.redis = RedisServer(self.settings, self.stack_dir)
        self.triton = TritonServer(self.settings, self.stack_dir, self.model_repository)
        self.mlflow = MlflowServer(self.settings, self.stack_dir)
        selected = set(INFRASTRUCTURE if only is None else only)
        self.infrastructure: list[Component] = [
            c for c in (self.kafka, self.redis, self.triton, self.mlflow) if c.name in selected
        ]
        self.services: list[ServiceProcess] = [
            self._service(spec) for spec in (SERVICES if services is None else services)
        ]
        # started on demand (the bench's LLM source), stopped by `down` when running
        self.optional: list[ServiceProcess] = [self._service(LLM_SOURCE)] if services is None else []
        self._say = say
        self._say_lock = threading.Lock()

    # -- connection details -----------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers

    @property
    def redis_url(self) -> str:
        return self.redis.redis_url

    @property
    def triton_grpc_url(self) -> str:
        return self.triton.grpc_url

    @property
    def triton_http_url(self) -> str:
        return self.triton.http_url

    @property
    def triton_metrics_url(self) -> str:
        return self.triton.metrics_url

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow.tracking_uri

    @property
    def admin_token_file(self) -> Path:
        return self.stack_dir / "admin.token"

    @property
    def admin_token(self) -> str:
        """The stack's admin API token, created (random, file mode 0600) on first use."""
        return stack_secret(self.admin_token_file, new_secret)

    @property
    def kafka_security(self) -> Any:
        """The `kafka_clients.KafkaSecurity` of a client of this stack's broker (SASL PLAIN)."""
        return self.kafka.client_security()

    @property
    def redis_password(self) -> str:
        """The local Redis' password (`requirepass`), created on first use."""
        return self.redis.password

    def service_env(self) -> dict[str, str]:
        """The `LABELLOOP_*` variables that point a service's `CommonSettings` at this stack
        (and register the stack's admin token)."""
        return {
            env_name("admin_token"): self.admin_token,
            env_name("kafka_bootstrap"): self.bootstrap_servers,
            env_name("redis_url"): self.redis_url,
            env_name("redis_password"): self.redis_password,
            **self.kafka.client_env(),
            env_name("triton_grpc_url"): self.triton_grpc_url,
            env_name("mlflow_tracking_uri"): self.mlflow_uri,
            env_name("model_repository"): str(self.model_repository),
        }

    @property
    def components(self) -> list[Component]:
        """Everything this stack manages, in start order."""
        return [*self.infrastructure, *self.services]

    def _service(self, spec: ServiceSpec) -> ServiceProcess:
        env = {**os.environ, **self.service_env(), **spec.env}
        home = self.stack_dir / spec.name
        process = ManagedProcess(
            spec.name,
            [sys.executable, "-m", spec.module, *spec.args],
            env,
            home / f"{spec.name}.log",
            spec.ready(env) if spec.ready is not None else _always_ready,
            ports=spec.ports,
            start_timeout_s=self.settings.start_timeout_s,
            stop_timeout_s=self.settings.stop_timeout_s,
        )
        endpoint = ", ".join(f"127.0.0.1:{p}" for p in spec.ports) or spec.module
        return ServiceProcess(spec.name, process, endpoint)

    # -- lifecycle ----------------------------------------------------------------------------------

    def _report(self, line: str) -> None:
        if self._say is not None:
            with self._say_lock:
                self._say(line)

    def _start(self, component: Component) -> StartResult:
        result = component.process.start()
        verb = "started" if result.started else "already running"
        self._report(
            f"==> {component.name}: {verb} on {component.endpoint} (pid {result.pid}) in {result.seconds:.1f}s"
        )
        return result

    def up(self) -> list[StartResult]:
        """Start whatever is not running and healthy; return when all of it is ready.

        Infrastructure starts in parallel, services after it in order. Raises StackError naming
        every component that failed (with its log's tail); the others are left running, so a
        second `up()` after a fix only starts what is missing.
        """
        self.stack_dir.mkdir(parents=True, exist_ok=True)
        results: list[StartResult] = []
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, len(self.infrastructure))) as pool:
            futures = [pool.submit(self._start, c) for c in self.infrastructure]
            for future in futures:
                try:
                    results.append(future.result())
                except StackError as error:
                    errors.append(str(error))
        if errors:
            raise StackError("\n\n".join(errors))
        for service in self.services:
            results.append(self._start(service))
        return results

    def down(self) -> list[str]:
        """Stop every managed process (services first); return the names that were running.

        Returns only when no process of any component is left (SIGTERM, SIGKILL after
        `stop_timeout_s`); pid files are removed; data and logs are kept.
        """
        stopped = [s.name for s in [*self.optional, *reversed(self.services)] if s.process.stop()]
        with ThreadPoolExecutor(max_workers=max(1, len(self.infrastructure))) as pool:
            outcomes = list(pool.map(lambda c: (c.name, c.process.stop()), reversed(self.infrastructure)))
        stopped += [name for name, was_running in outcomes if was_running]
        for name in stopped:
            self._report(f"==> {name}: stopped")
        if not stopped:
            self._report("==> nothing was running")
        return stopped

    def status(self) -> list[ProcessStatus]:
        """One row per component: pid (None when down), ports, and whether it is healthy now."""
        return [c.process.status() for c in self.components]

    def healthy(self) -> bool:
        """True when every component is running and healthy."""
        return all(row.healthy for row in self.status())


def format_status(rows: Sequence[ProcessStatus]) -> str:
    """`status` as a text table: component, pid, ports, healthy."""
    lines = [f"{'component':<14} {'pid':>8}  {'ports':<20} healthy"]
    for row in rows:
        pid = str(row.pid) if row.pid is not None else "-"
        ports = ",".join(map(str, row.ports)) or "-"
        lines.append(f"{row.name:<14} {pid:>8}  {ports:<20} {'yes' if row.healthy else 'no'}")
    return "\n".join(lines)
