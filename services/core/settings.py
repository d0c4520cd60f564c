"""Typed settings from `LABELLOOP_`-prefixed environment variables.

One frozen dataclass per service, built once at start-up with `load(SettingsClass)`. Each field
reads `LABELLOOP_<FIELD_NAME_UPPER>`; a missing required value or one that does not parse fails
fast with `SettingsError` naming the variable. Defaults are the local stack's (`make up`).
"""

from __future__ import annotations

import dataclasses
import os
import socket
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
    kafka_security_protocol: str = setting("SASL_PLAINTEXT")
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (the local stack: SASL_PLAINTEXT)."""
    kafka_sasl_mechanism: str = setting("PLAIN")
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)."""
    kafka_username: str = setting("labelloop")
    kafka_password: str = setting("")
    """From a Secret; empty: read `kafka_password_file`."""
    kafka_password_file: str = setting(".run/kafka.password")
    """Read for the password when `kafka_password` is empty (default: the local stack's)."""
    kafka_ca_file: str = setting("")
    """CA certificate (PEM) the brokers' TLS certificates are checked against (SSL, SASL_SSL)."""
    kafka_transactions: bool = setting(True)
    """Consume loops commit each batch's outputs with its offsets in one Kafka transaction
    (exactly-once to read_committed readers); false: idempotent produce, flush, then commit
    (at-least-once: a crash between the two publishes the batch again)."""
    instance_id: str = setting("")
    """This process's stable name among the replicas of its service (empty: the host name, i.e.
    the pod name in Kubernetes). Part of its consume loop's transactional.id: keep it across
    restarts so a restarted process aborts its predecessor's open transaction at once, and
    unique among the live replicas."""
    topic_replication_factor: int = setting(1, positive)
    """Replicas of each topic Labelloop creates (production: 3)."""
    topic_min_insync_replicas: int = setting(1, positive)
    """`min.insync.replicas` of each topic Labelloop creates (production: 2); producers use acks=all."""
    topic_prefix: str = setting("labelloop")
    redis_url: str = setting("redis://127.0.0.1:16379/0")
    redis_password: str = setting("")
    """Redis' password (`LABELLOOP_REDIS_PASSWORD`, from a Secret); overrides one in the URL."""
    redis_password_file: str = setting(".run/redis.password")
    """Read for the password when `redis_password` is empty and the file exists (default: the
    local stack's, so the CLI finds it without configuration)."""
    redis_key_prefix: str = setting("labelloop")
    triton_grpc_url: str = setting("127.0.0.1:18001")
    mlflow_tracking_uri: str = setting("http://127.0.0.1:15000")
    model_repository: str = setting(".run/model-repository")
    metrics_port: int = setting(0, port)
    log_level: str = setting("INFO")
    poll_timeout_ms: int = setting(200, positive)
    max_poll_records: int = setting(500, positive)
    shutdown_timeout_s: float = setting(20.0, positive)
    grpc_tls_cert_file: str = setting("")
    """PEM certificate (chain) of this service's gRPC server; with the key, the server speaks TLS."""
    grpc_tls_key_file: str = setting("")
    grpc_tls_client_ca_file: str = setting("")
    """PEM CA: when set, gRPC clients must present a certificate it signed (mutual TLS)."""
    admin_token: str = setting(
        "", lambda v: None if not v or len(v) >= 16 else "must be at least 16 characters"
    )
    """The deployment's bootstrap admin token (from a Secret): gRPC services register its hash
    at start, so the first admin can create the other tokens. Empty: none."""

    def transactional_id(self, service: str) -> str | None:
        """The transactional.id of `service`'s consume loop (None: transactions are off)."""
        if not self.kafka_transactions:
            return None
        return f"{self.topic_prefix}.{service}.{self.instance_id or socket.gethostname()}"

    def redis_secret(self) -> str | None:
        """The Redis password to use: `redis_password`, else the first line of an existing
        `redis_password_file`, else None (the URL's own, if any)."""
        if self.redis_password:
            return self.redis_password
        if self.redis_password_file and os.path.isfile(self.redis_password_file):
            with open(self.redis_password_file) as f:
                return f.readline().strip() or None
        return None

    def kafka_security(self) -> Any:
        """The `kafka_clients.KafkaSecurity` these settings describe (the password from
        `kafka_password`, else the first line of an existing `kafka_password_file`)."""
        from labelloop.core.kafka_clients import KafkaSecurity

        password = self.kafka_password
        if not password and self.kafka_password_file and os.path.isfile(self.kafka_password_file):
            with open(self.kafka_password_file) as f:
                password = f.readline().strip()
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_username,
            password=password,
            ca_file=self.kafka_ca_file,
        )
