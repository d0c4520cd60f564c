"""gRPC server bootstrap: one interceptor authenticates and authorizes every call, maps
Labelloop errors to status codes and records metrics; the standard health service (open to
everyone) reports the service's dependencies honestly.

Auth: every call but the health service's carries `authorization: Bearer <token>`; the token is
looked up in the `TokenStore` and the call checked against `labelloop.core.access.RULES`
(client streams: each message). The caller's `Principal` is `access.current()` in the servicer.

Mapping (CONVENTIONS.md): Unauthenticated -> UNAUTHENTICATED, PermissionDenied ->
PERMISSION_DENIED (both name what is missing), InvalidArgument -> INVALID_ARGUMENT (message
names the field), NotFound -> NOT_FOUND, AlreadyExists -> ALREADY_EXISTS, FailedPrecondition ->
FAILED_PRECONDITION, DependencyUnavailable and Contended -> UNAVAILABLE; anything else ->
INTERNAL (logged with its traceback).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from labelloop.core import access, metrics
from labelloop.core.errors import (
    AlreadyExists,
    Contended,
    DependencyUnavailable,
    FailedPrecondition,
    InvalidArgument,
    LabelloopError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from labelloop.core.health import Health
from labelloop.core.tokens import TokenStore, bearer_token

log = logging.getLogger(__name__)

STATUS_OF: dict[type[LabelloopError], grpc.StatusCode] = {
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    DependencyUnavailable: grpc.StatusCode.UNAVAILABLE,
    Contended: grpc.StatusCode.UNAVAILABLE,
}


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception raised by a handler."""
    for cls, code in STATUS_OF.items():
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Wraps every handler: authenticates and authorizes the call (unless its service is public),
    maps exceptions to status codes, counts requests, times them."""

    def __init__(self, service: str, tokens: TokenStore) -> None:
        self.service = service
        self.tokens = tokens

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        full_method = details.method
        if access.is_public(full_method):
            return handler
        method = full_method.rsplit("/", 1)[-1]
        kinds = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler, False),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler, True),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler, False),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler, True),
        )
        for behavior, make, streaming_in in kinds:
            if behavior:
                return make(
                    self._wrap(behavior, full_method, method, streaming_in),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _authorize(
        self, context: grpc.ServicerContext, full_method: str, request: Any, streaming: bool
    ) -> Any:
        """Authenticate the caller, bind it for the servicer, and return the request to serve
        (a client stream comes back wrapped so each message is authorized)."""
        principal = self.tokens.authenticate(bearer_token(context.invocation_metadata()))
        access.set_current(principal)
        if streaming:
            return access.authorize_stream(principal, full_method, request)
        access.authorize(principal, full_method, request)
        return request

    def _wrap(
        self,
        fn: Callable[[Any, grpc.ServicerContext], Any],
        full_method: str,
        method: str,
        streaming_in: bool,
    ) -> Callable[..., Any]:
        service = self.service

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            bound = access.set_current(None)
            try:
                request = self._authorize(context, full_method, request, streaming_in)
                return fn(request, context)
            except LabelloopError as exc:
                code = status_for(exc)
                context.abort(code, str(exc))
            except Exception as exc:
                if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortError" or context.code():
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception("%s/%s failed", service, method)
                context.abort(code, f"internal error: {type(exc).__name__}: {exc}")
            finally:
                access.reset_current(bound)
                metrics.GRPC_REQUESTS.labels(service, method, code.name).inc()
                metrics.GRPC_SECONDS.labels(service, method).observe(time.perf_counter() - started)

        return wrapped


def server_credentials(settings: Any) -> grpc.ServerCredentials | None:
    """TLS credentials from `LABELLOOP_GRPC_TLS_CERT_FILE` / `_KEY_FILE` (and, for mutual TLS,
    `_CLIENT_CA_FILE`); None when no certificate is configured (plaintext). SettingsError names
    the variable of a missing or unreadable file."""
    from labelloop.core.settings import SettingsError

    cert, key, client_ca = (
        settings.grpc_tls_cert_file,
        settings.grpc_tls_key_file,
        settings.grpc_tls_client_ca_file,
    )
    if not cert and not key:
        if client_ca:
            raise SettingsError(
                "LABELLOOP_GRPC_TLS_CLIENT_CA_FILE needs LABELLOOP_GRPC_TLS_CERT_FILE and _KEY_FILE"
            )
        return None

    def read(var: str, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise SettingsError(f"{var}={path!r}: {exc.strerror or exc}") from None

    pair = (
        read("LABELLOOP_GRPC_TLS_KEY_FILE", key),
        read("LABELLOOP_GRPC_TLS_CERT_FILE", cert),
    )
    if not client_ca:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=read("LABELLOOP_GRPC_TLS_CLIENT_CA_FILE", client_ca),
        require_client_auth=True,
    )


def build_server(
    service: str,
    port: int,
    register: Iterable[Callable[[grpc.Server], None]],
    health_state: Health,
    tokens: TokenStore,
    host: str = "0.0.0.0",
    max_workers: int = 16,
    tls: grpc.ServerCredentials | None = None,
) -> grpc.Server:
    """A started gRPC server on `host:port` with the servicers `register` adds, the auth and
    error-mapping interceptor (tokens checked in `tokens`) and the standard health service driven
    by `health_state`; TLS (or mutual TLS) when `tls` is given (`server_credentials`)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{service}-grpc"),
        interceptors=[ErrorMappingInterceptor(service, tokens)],
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
    )
    for add in register:
        add(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_state.bind_grpc(health_servicer)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, tls) if tls is not None else server.add_insecure_port(address)
    if bound == 0:
        raise DependencyUnavailable("grpc", f"could not bind {host}:{port} (in use?)")
    server.start()
    log.info(
        "%s: gRPC listening on %s:%d (%s)", service, host, port, "TLS" if tls is not None else "plaintext"
    )
    return server
