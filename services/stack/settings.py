"""Settings of the local stack (`python -m labelloop.stack`, `make up`, the test fixtures).

Every field reads `LABELLOOP_<FIELD>` (e.g. `LABELLOOP_KAFKA_PORT`). The defaults are the
ports the services' `CommonSettings` defaults point at, so `make up` and the services agree
without any configuration. Relative paths are resolved against the current directory when
`LocalStack` is built (`make` runs from the repository root).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from labelloop.core.settings import env_name, port, positive, setting


@dataclass(frozen=True)
class StackSettings:
    """Where the local stack keeps its state and which loopback ports it listens on."""

    stack_dir: str = setting(".run")
    """Run directory: one sub-directory per component with its data, log and pid file."""
    kafka_libs_dir: str = setting(".cache/kafka/libs")
    """The Kafka broker's jars, fetched by `python -m labelloop.stack fetch`."""
    model_repository: str = setting("")
    """Triton's model repository; empty means `<stack_dir>/model-repository` (the services' default)."""
    kafka_port: int = setting(19092, port)
    kafka_controller_port: int = setting(19093, port)
    redis_port: int = setting(16379, port)
    triton_http_port: int = setting(18000, port)
    triton_grpc_port: int = setting(18001, port)
    triton_metrics_port: int = setting(18002, port)
    mlflow_port: int = setting(15000, port)
    mlflow_workers: int = setting(1, positive)
    kafka_heap_mb: int = setting(512, positive)
    start_timeout_s: float = setting(120.0, positive)
    """How long one component may take to become ready before `up` fails."""
    stop_timeout_s: float = setting(30.0, positive)
    """How long `down` waits after SIGTERM before it SIGKILLs a process group."""


def settings_env(settings: StackSettings) -> dict[str, str]:
    """The `LABELLOOP_*` variables that make `load(StackSettings)` rebuild `settings` in a child process."""
    return {env_name(f.name): str(getattr(settings, f.name)) for f in fields(settings)}
