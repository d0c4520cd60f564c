"""Label checks before a training: which labels look wrong, given out-of-sample probabilities.

Pure (no Kafka, Redis, MLflow): the retraining service calls `find_issues` from its training
worker with the out-of-fold probabilities of the training split and the held-out probabilities
of the held-out split (each item scored by a model that never saw it), and turns the result into
review tasks (`review_task`). cleanlab's `find_label_issues` (confident learning, ranked by
self-confidence) decides what is flagged.

What happens to a flagged label depends on its source:
- people's label (`HUMAN`): it goes to a different annotator as a review task (at most once per
  item: `already_reviewed` lists the items reviewed or sent for review before); it stays in the
  training set until the review's verdict replaces it (retraining/dataset.py, `apply_review`);
- an auto-label (`AUTO`): it is left out of training. (Today's labeled set holds people's labels
  only; audits' answers count as people's. The case is here so a set that trains on auto-labels
  inherits the rule.)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from labelloop.retraining.dataset import HumanLabel
from labelloop.v1 import events_pb2

__all__ = ["AUTO", "HUMAN", "LabelIssues", "find_issues", "review_task", "review_task_id", "review_tasks"]

HUMAN = "human"
AUTO = "auto"


@dataclass(frozen=True)
class LabelIssues:
    """What the checks found among `checked` labels (indices into the inputs)."""

    checked: int
    flagged_human: tuple[int, ...]  # people's labels that look wrong (all of them)
    flagged_auto: tuple[int, ...]  # auto-labels that look wrong: left out of training
    to_review: tuple[int, ...]  # flagged human labels not reviewed before: review tasks to send

    def counts(self) -> dict[str, float]:
        """The counts logged to the MLflow run (as metrics) and to Prometheus."""
        return {
            "label_checks.checked": float(self.checked),
            "label_checks.flagged_human": float(len(self.flagged_human)),
            "label_checks.flagged_auto": float(len(self.flagged_auto)),
            "label_checks.reviews_sent": float(len(self.to_review)),
        }


def find_issues(
    labels: Sequence[str],
    probs: np.ndarray,
    valid: Sequence[bool] | np.ndarray,
    sources: Sequence[str],
    label_set: Sequence[str],
    item_ids: Sequence[str],
    already_reviewed: Collection[str] = (),
    min_per_class: int = 20,
    max_given_share: float = 0.75,
) -> LabelIssues:
    """The labels that look wrong: flagged by cleanlab (``filter_by="both"``: pruned by the
    estimated noise rates and per class) and given, by the out-of-sample model, less than
    `max_given_share` of a uniform guess's probability (1 / the classes present).

    `probs[i]` (columns in `label_set` order) must come from a model that did not train on item
    `i`; rows where `valid[i]` is False (a fold that could not be trained) are not checked.
    `sources[i]` is `HUMAN` or `AUTO`. Nothing is flagged until the checked labels number
    `min_per_class` per class present (0: never): early models are too weak to judge people,
    and every flag costs a review. Deterministic for the same inputs.

    Why both conditions: on 20 Newsgroups (3,000 posts, 5% of labels flipped at random, TF-IDF
    out-of-fold probabilities over 20 classes, checks every 300 labels from 400 on), cleanlab
    alone flagged 511 labels at precision 0.27; with the probability condition at 0.75 of
    uniform, about 0.68 precision and recall (0.5: 0.80 and 0.46).
    """
    n = len(labels)
    if not (len(probs) == len(valid) == len(sources) == len(item_ids) == n):
        raise ValueError("labels, probs, valid, sources and item_ids must have the same length")
    index = {label: i for i, label in enumerate(label_set)}
    rows = [i for i in range(n) if valid[i] and labels[i] in index]
    empty = LabelIssues(0, (), (), ())
    if len(rows) < 2:
        return empty
    y = np.asarray([index[labels[i]] for i in rows], dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)[rows]
    present = np.unique(y)
    if len(present) < 2 or min_per_class <= 0 or len(rows) < min_per_class * len(present):
        return empty
    # cleanlab wants every column to be a class that occurs: keep the present ones, renumbered.
    p = p[:, present]
    sums = p.sum(axis=1, keepdims=True)
    p = np.where(sums > 0, p / np.where(sums > 0, sums, 1.0), 1.0 / len(present))
    y = np.searchsorted(present, y)
    from cleanlab.filter import find_label_issues  # imported here: a heavy import, trainings only

    # n_jobs=1: no worker processes forked from a service with Kafka clients and threads.
    flags = find_label_issues(labels=y, pred_probs=p, filter_by="both", n_jobs=1)
    unlikely = p[np.arange(len(y)), y] < max_given_share / len(present)
    flagged = [rows[j] for j in np.flatnonzero(flags & unlikely)]
    human = tuple(i for i in flagged if sources[i] == HUMAN)
    auto = tuple(i for i in flagged if sources[i] == AUTO)
    seen = set(already_reviewed)
    review = tuple(i for i in human if item_ids[i] not in seen)
    return LabelIssues(len(rows), human, auto, review)


def review_task_id(item_id: str) -> str:
    """The task id of an item's review task."""
    return f"{item_id}:review"


def review_task(
    ingested: events_pb2.ItemIngested, labels: Sequence[str], annotators: Sequence[str]
) -> events_pb2.TaskRouted:
    """The review task of a flagged human label: one more annotator, none of `annotators`, and
    no prediction (the reviewer sees neither the model's answer nor the first annotator's)."""
    task = events_pb2.TaskRouted(
        task_id=review_task_id(ingested.item.item_id),
        reason=events_pb2.TASK_REASON_REVIEW,
        priority=1.0,
        annotators_required=1,
        answer_probability=1.0,
        review_of=events_pb2.ReviewOf(labels=list(labels), annotators=list(annotators)),
        enqueue=events_pb2.Enqueue(),
    )
    task.ingested.CopyFrom(ingested)
    task.routed_at.GetCurrentTime()
    return task


def review_tasks(issues: LabelIssues, entries: Sequence[HumanLabel]) -> list[events_pb2.TaskRouted]:
    """The review tasks of `issues.to_review` (indices into `entries`, the labels checked)."""
    return [
        review_task(entry.ingested, [entry.label], entry.annotators)
        for entry in (entries[i] for i in issues.to_review)
        if entry.ingested is not None
    ]
