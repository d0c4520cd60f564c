"""gRPC client channels to Labelloop's APIs: every call carries `authorization: Bearer <token>`.

Used by the CLI, the bench and demo, and the tests. Where a token comes from is `resolve_token`:
`LABELLOOP_TOKEN`, else the file `LABELLOOP_TOKEN_FILE` (default `.run/admin.token`, the admin
token the local stack writes on its first start). TLS: `ClientTls` (the CLI's
`LABELLOOP_GRPC_CA_FILE`, and `LABELLOOP_GRPC_CLIENT_CERT_FILE` / `_KEY_FILE` for mutual TLS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from labelloop.core.errors import LabelloopError

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


def channel(
    target: str, token: str, options: Sequence[tuple[str, Any]] = (), tls: ClientTls | None = None
) -> grpc.Channel:
    """A channel to `target` whose every call carries `token` (usable as a context manager);
    TLS when `tls` names a CA."""
    credentials = tls.credentials() if tls is not None else None
    if credentials is None:
        raw = grpc.insecure_channel(target, options=list(options))
    else:
        raw = grpc.secure_channel(target, credentials, options=list(options))
    return grpc.intercept_channel(raw, BearerToken(token))
