"""gRPC channels for Labelloop's own clients (the CLI, the bench, simulated annotators), and the
retry policy we recommend to client apps.

Two layers, because a service restart outlasts what gRPC's own retries cover:
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
from typing import Any, TypeVar

import grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

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


def channel(target: str, *, max_message_bytes: int | None = None) -> grpc.Channel:
    """An insecure channel to `target` with the retry policy (and, if given, a larger send and
    receive limit)."""
    options: list[tuple[str, Any]] = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", SERVICE_CONFIG_JSON),
    ]
    if max_message_bytes is not None:
        options += [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
    return grpc.insecure_channel(target, options=options)


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
