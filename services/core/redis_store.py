"""The one place Redis clients and key names are made. Every key starts with the configured
prefix (`LABELLOOP_REDIS_KEY_PREFIX`, default "labelloop") so deployments and tests can share
one Redis."""

from __future__ import annotations

from typing import Any

import redis

from labelloop.core.errors import DependencyUnavailable, LabelloopError


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A Redis client for `url` (redis://host:port/db); connection errors surface on first use."""
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 3, "health_check_interval": 30}
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


class Keys:
    """Key names under one prefix: `Keys("labelloop").project("p")` -> "labelloop:project:p"."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))


def unavailable(exc: redis.RedisError) -> LabelloopError:
    """Wrap a Redis error: a connection or timeout error means Redis is unavailable (retry later);
    anything else (e.g. a script error) is a bug, reported as such rather than as an outage."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return DependencyUnavailable("redis", str(exc))
    return LabelloopError(f"redis error: {exc}")
