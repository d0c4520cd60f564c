"""Typed settings from `LABELLOOP_`-prefixed environment variables.

One frozen dataclass per service, built once at start-up with `load(SettingsClass)`. Each field
reads `LABELLOOP_<FIELD_NAME_UPPER>`; a missing required value or one that does not parse fails
fast with `SettingsError` naming the variable. Defaults are the local stack's (`make up`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from labelloop.core.errors import LabelloopError

PREFIX = "LABELLOOP_"
T = TypeVar("T")


class SettingsError(LabelloopError):
    """A setting is missing or malformed; the message names the environment variable."""


def env_name(field_name: str) -> str:
    """The environment variable that sets `field_name`."""
    return PREFIX + field_name.upper()


def _parse(var: str, raw: str, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw == "":
            return None
        return _parse(var, raw, args[0])
    if origin is tuple:
        (inner, *_) = typing.get_args(typ)
        return tuple(_parse(var, part.strip(), inner) for part in raw.split(",") if part.strip())
    if typ is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{var}={raw!r}: expected a boolean (true/false/1/0)")
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r}: expected an integer") from None
    if typ is float:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r}: expected a number") from None
    if typ is str:
        return raw
    raise TypeError(f"unsupported settings type {typ!r} for {var}")


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build the frozen settings `cls` from `environ` (default: os.environ) plus `overrides`.

    Raises SettingsError naming the variable when a value does not parse, a required one is
    missing, or a field's `validate` metadata rejects it.
    """
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = env_name(f.name)
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif var in env:
            values[f.name] = _parse(var, env[var], hints[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SettingsError(f"{var} is required but not set")
        check = f.metadata.get("validate")
        if check is not None and f.name in values:
            problem = check(values[f.name])
            if problem:
                raise SettingsError(f"{var}={values[f.name]!r}: {problem}")
    return cls(**values)


def positive(value: float) -> str | None:
    """Validator: the value must be > 0."""
    return None if value > 0 else "must be greater than 0"


def non_negative(value: float) -> str | None:
    """Validator: the value must be >= 0."""
    return None if value >= 0 else "must be 0 or more"


def port(value: int) -> str | None:
    """Validator: a TCP port (0 disables the listener)."""
    return None if 0 <= value <= 65535 else "must be a port number between 0 and 65535"


def setting(default: Any, validate: Any = None) -> Any:
    """A settings field with a default and an optional validator returning an error text."""
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple default")
    return field(default=default, metadata={"validate": validate} if validate else {})


@dataclass(frozen=True)
class CommonSettings:
    """Settings every service reads. Service settings subclass this."""

    kafka_bootstrap: str = setting("127.0.0.1:19092")
    topic_prefix: str = setting("labelloop")
    redis_url: str = setting("redis://127.0.0.1:16379/0")
    redis_key_prefix: str = setting("labelloop")
    triton_grpc_url: str = setting("127.0.0.1:18001")
    mlflow_tracking_uri: str = setting("http://127.0.0.1:15000")
    model_repository: str = setting(".run/model-repository")
    metrics_port: int = setting(0, port)
    log_level: str = setting("INFO")
    poll_timeout_ms: int = setting(200, positive)
    max_poll_records: int = setting(500, positive)
    shutdown_timeout_s: float = setting(20.0, positive)
    admin_token: str = setting(
        "", lambda v: None if not v or len(v) >= 16 else "must be at least 16 characters"
    )
    """The deployment's bootstrap admin token (from a Secret): gRPC services register its hash
    at start, so the first admin can create the other tokens. Empty: none."""
