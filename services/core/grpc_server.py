"""gRPC server bootstrap: one interceptor maps Labelloop errors to status codes and records
metrics; the standard health service reports the service's dependencies honestly.

Mapping (CONVENTIONS.md): InvalidArgument -> INVALID_ARGUMENT (message names the field),
NotFound -> NOT_FOUND, AlreadyExists -> ALREADY_EXISTS, FailedPrecondition -> FAILED_PRECONDITION,
DependencyUnavailable -> UNAVAILABLE; anything else -> INTERNAL (logged with its traceback).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from labelloop.core import metrics
from labelloop.core.errors import (
    AlreadyExists,
    DependencyUnavailable,
    FailedPrecondition,
    InvalidArgument,
    LabelloopError,
    NotFound,
)
from labelloop.core.health import Health

log = logging.getLogger(__name__)

STATUS_OF: dict[type[LabelloopError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    DependencyUnavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception raised by a handler."""
    for cls, code in STATUS_OF.items():
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Wraps every handler: maps exceptions to status codes, counts requests, times them."""

    def __init__(self, service: str) -> None:
        self.service = service

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # streaming responses are not used by Labelloop's APIs

    def _wrap(self, fn: Callable[[Any, grpc.ServicerContext], Any], method: str) -> Callable[..., Any]:
        service = self.service

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
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
                metrics.GRPC_REQUESTS.labels(service, method, code.name).inc()
                metrics.GRPC_SECONDS.labels(service, method).observe(time.perf_counter() - started)

        return wrapped


def build_server(
    service: str,
    port: int,
    register: Iterable[Callable[[grpc.Server], None]],
    health_state: Health,
    host: str = "0.0.0.0",
    max_workers: int = 16,
) -> grpc.Server:
    """A started gRPC server on `host:port` with the servicers `register` adds, the error-mapping
    interceptor and the standard health service driven by `health_state`."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{service}-grpc"),
        interceptors=[ErrorMappingInterceptor(service)],
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
    )
    for add in register:
        add(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_state.bind_grpc(health_servicer)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise DependencyUnavailable("grpc", f"could not bind {host}:{port} (in use?)")
    server.start()
    log.info("%s: gRPC listening on %s:%d", service, host, port)
    return server
