"""The one exception hierarchy of Labelloop. The gRPC interceptor maps these to status codes."""

from __future__ import annotations


class LabelloopError(Exception):
    """Base of every error Labelloop raises on purpose."""


class InvalidArgument(LabelloopError):
    """Bad input; `field` names the offending field (gRPC INVALID_ARGUMENT)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class NotFound(LabelloopError):
    """A named thing does not exist (gRPC NOT_FOUND)."""


class AlreadyExists(LabelloopError):
    """A thing with that id exists already (gRPC ALREADY_EXISTS)."""


class FailedPrecondition(LabelloopError):
    """The request is valid but the state forbids it, e.g. a stale lease (gRPC FAILED_PRECONDITION)."""


class Unauthenticated(LabelloopError):
    """No token, or one that is unknown, revoked or expired (gRPC UNAUTHENTICATED)."""


class PermissionDenied(LabelloopError):
    """A valid token whose role or projects do not allow the call (gRPC PERMISSION_DENIED)."""


class DependencyUnavailable(LabelloopError):
    """A dependency (Kafka, Redis, Triton, MLflow) is down; retry later (gRPC UNAVAILABLE).

    Raised inside a stream handler it pauses the consumer with backoff without committing.
    """

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(f"{dependency} unavailable: {message}")
        self.dependency = dependency


class Contended(LabelloopError):
    """Another call holds what this one needs, for now (an item id another ingest call is still
    accepting, or one that crashed while accepting it); retry shortly (gRPC UNAVAILABLE)."""


class PoisonMessage(LabelloopError):
    """One message cannot be processed, ever; it goes to the dead-letter topic with this reason."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason
