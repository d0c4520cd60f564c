"""The local stack (Kafka, Redis, Triton, MLflow, and the services) as real processes.

Used by `make up/down/status` (`python -m labelloop.stack`) and by the test fixtures.
"""

from labelloop.stack.local_stack import INFRASTRUCTURE, LocalStack, format_status
from labelloop.stack.process import ManagedProcess, ProcessStatus, StackError, StartResult
from labelloop.stack.services import SERVICES, ServiceSpec
from labelloop.stack.settings import StackSettings

__all__ = [
    "INFRASTRUCTURE",
    "SERVICES",
    "LocalStack",
    "ManagedProcess",
    "ProcessStatus",
    "ServiceSpec",
    "StackError",
    "StackSettings",
    "StartResult",
    "format_status",
]
