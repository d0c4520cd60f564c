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
    """0: route on the model's probabilities (default). N > 0: for items rules voted on, route on
    the label model's posterior, counting the sources with at least N votes checked by people."""
