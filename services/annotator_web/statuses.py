"""gRPC status -> HTTP response: one table, so the page can act on every failure.

Called by the app for every failed gRPC call to human-tasks or ingest. The JSON body is
`{"error": <kind>, "message": <what happened and what to do>}`; the kinds are what the page
switches on:

| gRPC | HTTP | kind | the page |
|---|---|---|---|
| UNAUTHENTICATED | 401 | unauthenticated | back to the login form |
| PERMISSION_DENIED | 403 | forbidden | says what is missing |
| INVALID_ARGUMENT | 422 | invalid | names the bad field (e.g. a label outside the set) |
| NOT_FOUND | 404 | not_found | e.g. an unknown project |
| FAILED_PRECONDITION | 409 | lease_lost | the lease expired or was released: next task |
| UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED | 503 | unavailable | banner, retries |
| UNIMPLEMENTED | 503 | not_implemented | the server lacks the API (e.g. no auth) |
| anything else | 502 | upstream_error | shows the message |

An empty queue is not an error: the lease endpoint answers 204 No Content.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class HttpError:
    """An HTTP error response: status, a machine-readable kind, a message for people."""

    status: int
    kind: str
    message: str

    def body(self) -> dict[str, str]:
        """The JSON body."""
        return {"error": self.kind, "message": self.message}


_TABLE: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "forbidden"),
    grpc.StatusCode.INVALID_ARGUMENT: (422, "invalid"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "lease_lost"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "unavailable"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (503, "unavailable"),
    grpc.StatusCode.UNIMPLEMENTED: (503, "not_implemented"),
}

_ADVICE: dict[str, str] = {
    "unauthenticated": "your token is not valid (unknown, expired or revoked): log in again",
    "lease_lost": "this task's lease expired or was released, so it went back to the queue",
    "unavailable": "the labeling service did not answer",
}


def http_error(code: grpc.StatusCode, details: str | None, service: str) -> HttpError:
    """The HTTP error for a failed call to `service` (e.g. "human-tasks") with gRPC `code`."""
    status, kind = _TABLE.get(code, (502, "upstream_error"))
    details = (details or "").strip()
    advice = _ADVICE.get(kind)
    if kind == "unavailable":  # the details (addresses, transport errors) are logged, not shown
        message = f"{advice} ({service})"
    elif kind == "not_implemented":
        message = f"{service} does not implement this call ({details or code.name}): is it up to date?"
    elif advice and details:
        message = f"{advice} ({service}: {details})"
    elif advice:
        message = advice
    else:
        message = f"{service}: {details or code.name}"
    return HttpError(status, kind, message)
