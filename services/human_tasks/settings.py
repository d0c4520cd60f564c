"""Human-tasks settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.media import DEFAULT_MEDIA_ROOT
from labelloop.core.settings import CommonSettings, non_negative, port, positive, setting


@dataclass(frozen=True)
class HumanTasksSettings(CommonSettings):
    """Human tasks: per-project priority queues, leases, consensus, the annotator gRPC API."""

    grpc_port: int = setting(50052, port)
    metrics_port: int = setting(9104, port)
    lease_ttl_s: float = setting(300.0, positive)
    reap_interval_s: float = setting(1.0, positive)
    # An answer recorded in Redis whose events were not produced this long after (a Kafka outage,
    # a client that did not retry, a process killed in between) is published by the upkeep. The
    # hold a recording call keeps on its production (queue.PRODUCE_HOLD_S, 30 s) is what keeps
    # two publishers apart; this only spaces the upkeep's attempts.
    republish_after_s: float = setting(30.0, positive)
    # When a model is deployed, up to this many waiting tasks nobody has started are sent back for
    # its opinion; those it auto-labels are withdrawn from people (0: never).
    rescore_limit: int = setting(1000, non_negative)
    lease_scan: int = setting(200, positive)  # how deep LeaseTask looks for a task the annotator has not seen
    # GetTaskMedia reads leased tasks' media here, up to this many bytes per file (below gRPC's
    # default 4 MiB receive limit of clients, so they need no option for it).
    media_root: str = setting(DEFAULT_MEDIA_ROOT)
    max_media_bytes: int = setting(4_000_000, positive)
