"""gRPC client channels to Labelloop's APIs, for the CLI, the bench and demo, the simulated
annotators and the tests; and the retry policy we recommend to client apps.

Every call carries `authorization: Bearer <token>`. Where a token comes from is `resolve_token`:
`LABELLOOP_TOKEN`, else the file `LABELLOOP_TOKEN_FILE` (default `.run/admin.token`, the admin
token the local stack writes on its first start). TLS: `ClientTls` (the CLI's
`LABELLOOP_GRPC_CA_FILE`, and `LABELLOOP_GRPC_CLIENT_CERT_FILE` / `_KEY_FILE` for mutual TLS).

Retries come in two layers, because a service restart outlasts what gRPC's own retries cover:
- `SERVICE_CONFIG`: gRPC's retry policy (`grpc.service_config`), retrying UNAVAILABLE up to 5
  attempts (gRPC's cap) with exponential backoff from 0.2 s, for every method of the three
  services. Every method is safe to retry: submits are idempotent by item id, answers by lease
  id; a LeaseTask whose response was lost leaves a lease that expires and re-queues its task.
- `call_with_retry`: retries a call that still ends UNAVAILABLE (ingest restarting, Kafka or
  Redis down behind it) with capped exponential backoff and jitter until `give_up_s`.
Client apps in other languages can pass the same JSON (`SERVICE_CONFIG_JSON`) as their channel's
default service config; it is printed in README.md ("Client retries").
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from labelloop.core.errors import LabelloopError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TOKEN_FILE = ".run/admin.token"


class MissingToken(LabelloopError):
    """No token configured for a client (the message says where one is looked for)."""


def resolve_token(token: str, token_file: str) -> str:
    """`token` if set, else the first line of `token_file`; MissingToken naming both otherwise."""
    if token.strip():
        return token.strip()
    path = Path(token_file) if token_file else None
    if path is not None and path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    raise MissingToken(
        "no API token: set LABELLOOP_TOKEN, or LABELLOOP_TOKEN_FILE to a file holding one "
        f"(looked for {token_file or '(none)'}; `make up` writes the local stack's admin token to "
        f"{DEFAULT_TOKEN_FILE})"
    )


class _ClientCallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, details: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> _ClientCallDetails:
        metadata = [m for m in (details.metadata or ()) if m[0].lower() != "authorization"]
        return _ClientCallDetails(details, [*metadata, self.header])

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass(frozen=True)
class ClientTls:
    """TLS of a client's channels: the CA that signed the servers' certificates, and for mutual
    TLS the client's own certificate and key (PEM files)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def credentials(self) -> grpc.ChannelCredentials | None:
        """None when no CA is set (plaintext)."""
        if not self.ca_file:
            return None

        def read(path: str) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


SERVICES = ("labelloop.v1.IngestService", "labelloop.v1.ProjectService", "labelloop.v1.HumanTaskService")
SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": name} for name in SERVICES],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.2s",
                "maxBackoff": "5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
SERVICE_CONFIG_JSON = json.dumps(SERVICE_CONFIG)


def channel(
    target: str,
    token: str = "",
    options: Sequence[tuple[str, Any]] = (),
    tls: ClientTls | None = None,
    *,
    max_message_bytes: int | None = None,
) -> grpc.Channel:
    """A channel to `target` with the retry policy, whose every call carries `token` (when given;
    usable as a context manager); TLS when `tls` names a CA; with `max_message_bytes`, a larger
    send and receive limit."""
    all_options: list[tuple[str, Any]] = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", SERVICE_CONFIG_JSON),
        *options,
    ]
    if max_message_bytes is not None:
        all_options += [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
    credentials = tls.credentials() if tls is not None else None
    if credentials is None:
        raw = grpc.insecure_channel(target, options=all_options)
    else:
        raw = grpc.secure_channel(target, credentials, options=all_options)
    return grpc.intercept_channel(raw, BearerToken(token)) if token else raw


def call_with_retry(
    call: Callable[[], T],
    *,
    give_up_s: float = 120.0,
    first_backoff_s: float = 0.5,
    max_backoff_s: float = 10.0,
    retry_on: Sequence[grpc.StatusCode] = (grpc.StatusCode.UNAVAILABLE,),
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call()`, retried while it fails with a status in `retry_on`, with exponential backoff
    (full jitter, capped at `max_backoff_s`) until `give_up_s` have passed; then the last error
    is raised. Other errors are raised at once."""
    deadline = clock() + give_up_s
    backoff = first_backoff_s
    attempt = 1
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            left = deadline - clock()
            if code not in retry_on or left <= 0:
                raise
            wait = min(left, random.uniform(backoff / 2, backoff))
            log.warning("attempt %d: %s; retrying in %.1fs", attempt, code, wait)
            sleep(wait)
            backoff = min(max_backoff_s, backoff * 2)
            attempt += 1
