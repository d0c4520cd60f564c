"""The one place Redis clients and key names are made. Every key starts with the configured
prefix (`LABELLOOP_REDIS_KEY_PREFIX`, default "labelloop") so deployments and tests can share
one Redis."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from labelloop.core.errors import DependencyUnavailable, LabelloopError


def connect(url: str, password: str | None = None, **kwargs: Any) -> redis.Redis:
    """A Redis client for `url` (redis://host:port/db, rediss:// for TLS) authenticating with
    `password` when given (it overrides one in the URL); connection errors surface on first use."""
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 3, "health_check_interval": 30}
    if password:
        options["password"] = password
        url = _without_password(url)  # redis-py lets a URL's password win over the argument
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))


class BadCredentials(LabelloopError):
    """Redis refused the configured credentials; the message names the setting to fix."""


def check_credentials(client: redis.Redis, url: str) -> None:
    """Raise BadCredentials when Redis at `url` refuses the client's credentials (a wrong or
    missing `LABELLOOP_REDIS_PASSWORD`). A Redis that is down is not an error here: services
    pause with backoff until it answers."""
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise BadCredentials(
            f"LABELLOOP_REDIS_PASSWORD: Redis at {url} refused the credentials ({exc})"
        ) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise BadCredentials(
                f"LABELLOOP_REDIS_PASSWORD: Redis at {url} refused the credentials ({exc})"
            ) from None
        raise
    except redis.RedisError:
        return


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
