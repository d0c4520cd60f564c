"""Human-tasks settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.settings import CommonSettings, port, positive, setting


@dataclass(frozen=True)
class HumanTasksSettings(CommonSettings):
    """Human tasks: per-project priority queues, leases, consensus, the annotator gRPC API."""

    grpc_port: int = setting(50052, port)
    metrics_port: int = setting(9104, port)
    lease_ttl_s: float = setting(300.0, positive)
    reap_interval_s: float = setting(1.0, positive)
    lease_scan: int = setting(200, positive)  # how deep LeaseTask looks for a task the annotator has not seen
