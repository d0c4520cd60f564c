"""Settings of the `labelloop` command (env `LABELLOOP_*`): where the services listen."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.settings import CommonSettings, setting


@dataclass(frozen=True)
class CliSettings(CommonSettings):
    """Addresses of the gRPC APIs the CLI talks to (defaults: the local stack)."""

    ingest_addr: str = setting("127.0.0.1:50051")
    human_tasks_addr: str = setting("127.0.0.1:50052")
