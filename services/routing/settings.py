"""Routing settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.settings import CommonSettings, non_negative, port, setting


@dataclass(frozen=True)
class RoutingSettings(CommonSettings):
    """Routing: auto-accept or send to people, by the project's live threshold."""

    metrics_port: int = setting(9103, port)
    audit_seed: str = setting("labelloop-audit")  # salts the audit sampling hash
    label_model_min_judged: int = setting(0, non_negative)
    """0 (default): route on the label model's posterior only under a threshold calibrated on it
    (retraining's `LABELLOOP_SOURCES_MIN_JUDGED`). N > 0 forces it under any threshold, counting
    the sources with at least N votes checked by people (not calibrated: for trials)."""
