"""The routing decision for one prediction, as a pure function.

- No model: a human task (reason NO_MODEL), priority 1.
- Top probability at or above the project's threshold for that label: one uniform draw `u` fixed
  by the item id decides. `u < exploration_rate` (from the threshold record): a human task
  (reason EXPLORATION) and no auto label; else `u < exploration_rate + audit_rate`: an auto label
  (source MODEL) and an audit task; else the auto label alone.
- Otherwise: a human task (reason UNCERTAIN) with priority 1 - (top1 - top2): the smallest
  margin first (uncertainty sampling).
The draw hashes the item id, so a redelivered prediction gets the same decision, and the
probability that people answer each item (`answer_probability`: 1 below the threshold,
`exploration_rate + audit_rate` above it) is known exactly: calibration weighs their answers by
its inverse (retraining/calibration.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from labelloop.core.thresholds import Threshold
from labelloop.v1 import common_pb2, events_pb2


@dataclass(frozen=True)
class Decision:
    """What routing does with one prediction."""

    auto_label: str | None  # the accepted label, or None
    confidence: float
    task_reason: int  # events_pb2.TaskReason; UNSPECIFIED when no task
    priority: float
    answer_probability: float = 1.0  # P(people answer the item at all) under this routing


def margin_priority(probabilities: list[float]) -> float:
    """1 - (top1 - top2): 1.0 for a coin flip, 0.0 for certainty."""
    ordered = sorted(probabilities, reverse=True)
    second = ordered[1] if len(ordered) > 1 else 0.0
    return 1.0 - (ordered[0] - second)


def audit_draw(item_id: str, seed: str) -> float:
    """A uniform number in [0, 1) fixed by the item id (and the seed)."""
    digest = hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def decide(
    prediction: events_pb2.Prediction, project: common_pb2.Project, threshold: Threshold, audit_seed: str
) -> Decision:
    """The decision for `prediction` under `threshold` (see module doc)."""
    if prediction.no_model or not prediction.scores:
        return Decision(None, 0.0, events_pb2.TASK_REASON_NO_MODEL, 1.0)
    probabilities = [s.probability for s in prediction.scores]
    top = max(range(len(probabilities)), key=probabilities.__getitem__)
    label = prediction.scores[top].label
    confidence = float(probabilities[top])
    priority = margin_priority(probabilities)
    if threshold.admits(label, confidence):
        explore = min(1.0, max(0.0, threshold.exploration_rate))
        answered = min(1.0, explore + project.spec.audit_rate)
        u = audit_draw(prediction.ingested.item.item_id, audit_seed)
        if u < explore:
            return Decision(None, confidence, events_pb2.TASK_REASON_EXPLORATION, priority, answered)
        reason = events_pb2.TASK_REASON_AUDIT if u < answered else events_pb2.TASK_REASON_UNSPECIFIED
        return Decision(label, confidence, reason, priority, answered)
    return Decision(None, confidence, events_pb2.TASK_REASON_UNCERTAIN, priority)
