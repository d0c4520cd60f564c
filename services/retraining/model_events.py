"""The `models` topic's events, as the retraining service announces them.

`model_event` builds one (pure); `announce` sends and flushes (the training thread and the gRPC
API announce outside the consume loop's transaction; the loop's own threshold moves are emitted
in its batch instead).
"""

from __future__ import annotations

from labelloop.core.stream import EventProducer, now_timestamp
from labelloop.core.thresholds import Threshold
from labelloop.core.topics import MODELS
from labelloop.v1 import events_pb2

__all__ = ["announce", "model_event"]


def model_event(
    pid: str,
    kind: int,
    model_name: str,
    version: int,
    *,
    run_id: str = "",
    family: str = "",
    metrics: dict[str, float] | None = None,
    threshold: Threshold | None = None,
    reason: str = "",
) -> events_pb2.ModelEvent:
    """A ModelEvent of `kind` for `pid`'s model (version 0: no Triton version yet)."""
    event = events_pb2.ModelEvent(
        project_id=pid,
        kind=kind,  # type: ignore[arg-type]
        model_name=model_name,
        model_version=version,
        family=family,
        mlflow_run_id=run_id,
        metrics=metrics or {},
        reason=reason,
        at=now_timestamp(),
    )
    if threshold is not None:
        event.threshold = threshold.threshold
        event.class_thresholds.update(threshold.class_thresholds)
    return event


def announce(producer: EventProducer, *events: events_pb2.ModelEvent) -> None:
    """Send `events` to `models` (keyed by project) and wait until they are written."""
    for event in events:
        producer.send(MODELS, event.project_id, event)
    producer.flush()
