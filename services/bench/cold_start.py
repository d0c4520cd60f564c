"""The bench report's `cold_start` section: what the zero-shot prior (retraining/zero_shot.py) did
before the first trained model, read from the project's `models` events and final labels.

- `prior_version`: the Triton version of the prior (0: none served, e.g. `LABELLOOP_ZERO_SHOT=false`);
- `first_trained_version`, `first_trained_family`: the first promoted version that is not the prior;
- `human_labels_to_first_trained_model`: final labels from people finalized up to the moment the
  first trained model was promoted (the labels it took to get a trained model serving);
- `items_before_first_trained_model`: items with a final label by then;
- `prior_auto_labeled`, `prior_auto_accuracy`: auto-labels given by the prior's version (after
  people's answers loosened its threshold) and their precision against the hidden labels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labelloop.bench.report import HUMAN, MODEL, FinalLabel
from labelloop.v1 import admin_pb2, events_pb2

__all__ = ["PRIOR_FAMILY", "cold_start", "prior_wait_default", "wait_for_prior"]

PRIOR_FAMILY = "zero-shot"
PRIOR_WAIT_S = 120.0


ENCODER_FAMILIES = ("cascade", "cascade-replace", "minilm-head")


def prior_wait_default() -> float:
    """How long `labelloop bench` waits, after creating its text project, for the zero-shot
    prior to serve before streaming: :data:`PRIOR_WAIT_S`, or 0 when the environment (the CLI's,
    which the stack it starts inherits) has no prior: `LABELLOOP_ZERO_SHOT` false, or
    `LABELLOOP_FAMILIES` without an encoder family."""
    value = os.environ.get("LABELLOOP_ZERO_SHOT", "true").strip().lower()
    families = os.environ.get("LABELLOOP_FAMILIES")
    if value in ("false", "0", "no", "off"):
        return 0.0
    if families is not None and not any(f.strip() in ENCODER_FAMILIES for f in families.split(",")):
        return 0.0
    return PRIOR_WAIT_S


def wait_for_prior(admin: Any, project_id: str, timeout_s: float, say: Callable[[str], None]) -> float:
    """Wait until a model version serves `project_id` (the prior, before any label) or
    `timeout_s` passes; returns the seconds waited. A real project's first items come some time
    after its creation; a bench that streams at once would measure the minute it takes to build
    and load the prior, not the prior."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        status = admin.GetProjectStatus(admin_pb2.GetProjectStatusRequest(project_id=project_id), timeout=10)
        if status.serving_version > 0:
            waited = time.monotonic() - started
            say(f"project {project_id}: the zero-shot prior serves (after {waited:.1f}s)")
            return waited
        time.sleep(0.5)
    say(f"project {project_id}: no prior served after {timeout_s:.0f}s; streaming anyway")
    return time.monotonic() - started


def cold_start(
    truth: Mapping[str, str], finals: Mapping[str, FinalLabel], model_events: Sequence[events_pb2.ModelEvent]
) -> dict[str, Any]:
    """The `cold_start` section (see module doc) of one project's run."""
    promoted = [e for e in model_events if e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED]
    prior = next((e for e in promoted if e.family == PRIOR_FAMILY), None)
    trained = next((e for e in promoted if e.family != PRIOR_FAMILY), None)
    trained_at = trained.at.ToMilliseconds() if trained is not None else float("inf")
    labeled = list(finals.values())
    before = [f for f in labeled if f.finalized_ms <= trained_at]
    prior_version = prior.model_version if prior is not None else 0
    prior_auto = [
        f for f in labeled if prior_version and f.source == MODEL and f.model_version == prior_version
    ]
    correct = sum(f.label == truth.get(f.item_id) for f in prior_auto)
    return {
        "prior_version": prior_version,
        "first_trained_version": trained.model_version if trained is not None else 0,
        "first_trained_family": trained.family if trained is not None else "",
        "human_labels_to_first_trained_model": sum(f.source == HUMAN for f in before),
        "items_before_first_trained_model": len(before),
        "prior_auto_labeled": len(prior_auto),
        "prior_auto_accuracy": round(correct / len(prior_auto), 4) if prior_auto else None,
    }
