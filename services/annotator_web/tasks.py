"""What the page shows of a leased task, as JSON: pure functions of the gRPC messages.

- `label_keys`: the key of each label, `1`-`9` then `a`-`z` in the project's label order
  (labels past the 35th have no key and are answered by clicking).
- `task_view`: the item's content, why it is here, the model's suggestion and its top 3 scores,
  and which label is pre-selected: none for audits, exploration items and reviews (people are not
  anchored by the model's answer; a review shows neither the model's nor the first annotator's
  answer) and none when no model has answered.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from labelloop.v1 import events_pb2, human_tasks_pb2

KEYS = tuple("123456789") + tuple(string.ascii_lowercase)

REASONS: dict[str, str] = {
    "uncertain": "The model was not sure enough to label it alone.",
    "audit": "An audit: the model labeled it alone; your answer checks the model's precision.",
    "no_model": "No model yet: people's first answers train it.",
    "exploration": "Exploration: a random sample, so the model's blind spots get measured.",
    "review": "A review: a check before training doubts this label; give yours, unswayed.",
    "unspecified": "Sent to people.",
}


def label_keys(labels: Sequence[str]) -> list[dict[str, str]]:
    """Each label with its key, in order: `[{"label": "sports", "key": "1"}, ...]`."""
    return [{"label": label, "key": KEYS[i] if i < len(KEYS) else ""} for i, label in enumerate(labels)]


def reason_name(reason: int) -> str:
    """`TASK_REASON_AUDIT` -> "audit" (and so for reasons added later)."""
    try:
        name = events_pb2.TaskReason.Name(reason)  # type: ignore[arg-type]
    except ValueError:
        return "unspecified"
    return name.removeprefix("TASK_REASON_").lower()


def task_view(lease: human_tasks_pb2.LeaseTaskResponse, multi_label: bool = False) -> dict[str, Any]:
    """The JSON the page renders for one leased task."""
    task = lease.task
    item = task.ingested.item
    reason = reason_name(task.reason)
    # Audits and exploration items are the samples that calibrate thresholds: people must not be
    # anchored by the model's answer there, or they would confirm it. A review hides the model's
    # answer and the label under review alike (the task's `review_of` never reaches the page).
    audit = reason in ("audit", "exploration", "review")
    scores = sorted(task.prediction.scores, key=lambda s: s.probability, reverse=True)
    top3 = (
        []
        if audit
        else [{"label": s.label, "probability": round(float(s.probability), 4)} for s in scores[:3]]
    )
    suggestion = None if audit or not scores or multi_label else scores[0].label
    preselect_labels = (
        [] if audit or not multi_label else [s.label for s in task.prediction.scores if s.probability >= 0.5]
    )
    content: dict[str, Any]
    if item.content.WhichOneof("body") == "media":
        media = item.content.media
        content = {"media": {"uri": media.uri, "content_type": media.content_type}}
    else:
        content = {"text": item.content.text}
    return {
        "lease_id": lease.lease_id,
        "lease_expires_at": lease.lease_expires_at.ToMilliseconds() / 1000,
        "task_id": task.task_id,
        "item_id": item.item_id,
        "project_id": item.project_id,
        "content": content,
        "metadata": dict(item.metadata),
        "reason": reason,
        "reason_text": REASONS.get(reason, REASONS["unspecified"]),
        "suggestion": suggestion,
        "preselect": suggestion,
        "top3": top3,
        "model": (
            {"name": task.prediction.model_name, "version": task.prediction.model_version}
            if task.prediction.model_name and not audit
            else None
        ),
        "annotators_required": task.annotators_required,
        "multi_label": multi_label,
        "preselect_labels": preselect_labels,
        "uncertain_labels": list(task.uncertain_labels),
    }
