"""What every service process does at start: logging, settings, the metrics/health HTTP port,
signal handling. Each service's `__main__` calls `bootstrap(...)` then runs its loop until the
stop flag is set."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TypeVar

from labelloop.core import metrics
from labelloop.core.health import Health
from labelloop.core.settings import CommonSettings, SettingsError, load
from labelloop.core.stream import StopFlag

S = TypeVar("S", bound=CommonSettings)


@dataclass
class Runtime:
    """A started service's shared pieces."""

    name: str
    health: Health
    stop: StopFlag


def configure_logging(level: str) -> None:
    """One log format for every service: time, level, logger, message."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)


def load_settings_or_exit(cls: type[S]) -> S:
    """Settings from the environment; on a bad value print the error and exit with status 2."""
    try:
        return load(cls)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def bootstrap(name: str, settings: CommonSettings) -> Runtime:
    """Configure logging, serve /metrics, /healthz, /readyz on the metrics port, and route
    SIGTERM/SIGINT to the returned stop flag."""
    configure_logging(settings.log_level)
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
