"""Routing settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.settings import CommonSettings, port, setting


@dataclass(frozen=True)
class RoutingSettings(CommonSettings):
    """Routing: auto-accept or send to people, by the project's live threshold."""

    metrics_port: int = setting(9103, port)
    audit_seed: str = setting("labelloop-audit")  # salts the audit sampling hash
