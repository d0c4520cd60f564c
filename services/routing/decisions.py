"""The routing decision for one prediction, as a pure function.

- No model: a human task (reason NO_MODEL), priority 1.
- Top probability at or above the project's threshold for that label: one uniform draw `u` fixed
  by the item id decides. `u < exploration_rate` (from the threshold record): a human task
  (reason EXPLORATION) and no auto label; else `u < exploration_rate + audit_rate`: an auto label
  (source MODEL) and an audit task; else the auto label alone. Exploration and audit tasks have
  priority `SAMPLE_PRIORITY` (1, the top: answered first, in arrival order), whatever the
  confidence: their answers are the sample that moves the threshold after each batch
  (retraining/calibration.move_threshold), and a sample answered least confident first is, until
  all of it is answered, a sample of the items nearest the threshold. (Measured on SpamAssassin
  with the margin's priority: the first 20 weighted answers of a version 0.975 right on its
  auto-labels read 0.800, and tightened its thresholds by 0.2 for half the stream.)
- Otherwise: a human task (reason UNCERTAIN) with priority 1 - (top1 - top2): the smallest
  margin first (uncertainty sampling). While the serving version is the zero-shot prior
  (`threshold.prior`), the priority is `prior_priority` instead: the prior's least-seen classes
  first, so the first trained model sees every class sooner.
Multi-label projects (`decide_labels`): each label's probability is its own decision: "on" when
at or above the label's upper threshold, "off" when at or below its lower one, else uncertain (a
label without calibrated thresholds is always uncertain). Only when every label is decided does
the item go the auto-label way above (the same draw for exploration and audits), with the set of
"on" labels (possibly none); otherwise a human task (reason UNCERTAIN, or NO_MODEL) that names the
uncertain labels, with priority the largest per-label uncertainty 1 - |2p - 1|.
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

#: The priority of exploration and audit tasks (see module doc): the top, so first come, first served.
SAMPLE_PRIORITY = 1.0


@dataclass(frozen=True)
class Decision:
    """What routing does with one prediction."""

    auto_label: str | None  # the accepted label, or None
    confidence: float
    task_reason: int  # events_pb2.TaskReason; UNSPECIFIED when no task
    priority: float
    answer_probability: float = 1.0  # P(people answer the item at all) under this routing
    auto_labels: tuple[str, ...] | None = None  # multi-label: the accepted "on" labels, or None
    uncertain_labels: tuple[str, ...] = ()  # multi-label: the labels people should look at

    @property
    def accepted(self) -> tuple[str, ...] | None:
        """The auto-label's label list (one label for single-label projects), or None."""
        if self.auto_label is not None:
            return (self.auto_label,)
        return self.auto_labels


def margin_priority(probabilities: list[float]) -> float:
    """1 - (top1 - top2): 1.0 for a coin flip, 0.0 for certainty."""
    ordered = sorted(probabilities, reverse=True)
    second = ordered[1] if len(ordered) > 1 else 0.0
    return 1.0 - (ordered[0] - second)


#: Rounds over the classes the zero-shot prior's order makes (`prior_priority`); after them, arrival order.
PRIOR_ROUNDS = 3


def prior_priority(class_rank: int, confidence: float) -> float:
    """The priority of an item the zero-shot prior sends to people: `(1 + confidence) / 2 /
    (1 + class_rank)`, where `class_rank` counts the project's earlier items the prior gave the
    same top label (routing/prior_order.py). The first item of each class the prior sees comes
    before the second of any class, and so on (a round over the classes), the most confident
    first within a round. After :data:`PRIOR_ROUNDS` rounds the rest come in arrival order (one
    priority, below every round's): the rounds are there so the first model sees every class,
    not to balance the classes. Balancing every label skews the first models and their
    calibration sample (whose weights say "a sample of the stream") toward the rare classes:
    on SpamAssassin (two classes), people's share was 0.125-0.138 with unlimited rounds, against
    0.097-0.111 with no prior and no cascade, and 0.117-0.119 with no prior (two runs each).

    Why not the prior's margin: measured offline (all-MiniLM-L6-v2 embeddings, a logistic
    head trained on the first 25 / 50 labels picked from a window of 100 waiting items, accuracy
    on the rest of the first 800 items), picking the prior's smallest margin gave 0.48 / 0.78 on
    BBC News and 0.21 / 0.36 on 20 Newsgroups against 0.82 / 0.84 and 0.25 / 0.37 in arrival
    order: the prior is least sure of the items hardest to learn from. Picking its least-seen
    class, most confident first, gave 0.83 / 0.91 and 0.37 / 0.49 (19 of 20 classes in the first
    25 labels against 14). A static priority approximates that pick (ranks are counted when
    routed, not when answered)."""
    if class_rank >= PRIOR_ROUNDS:
        return 0.5 / (1.0 + PRIOR_ROUNDS)
    return (1.0 + min(1.0, max(0.0, confidence))) / 2.0 / (1.0 + max(0, class_rank))


def audit_draw(item_id: str, seed: str) -> float:
    """A uniform number in [0, 1) fixed by the item id (and the seed)."""
    digest = hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def decide(
    prediction: events_pb2.Prediction,
    project: common_pb2.Project,
    threshold: Threshold,
    audit_seed: str,
    class_rank: int | None = None,
) -> Decision:
    """The decision for `prediction` under `threshold` (see module doc); `class_rank` is the
    prior's rank of the item's top label (`prior_priority`), given when `threshold.prior`."""
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
            return Decision(None, confidence, events_pb2.TASK_REASON_EXPLORATION, SAMPLE_PRIORITY, answered)
        reason = events_pb2.TASK_REASON_AUDIT if u < answered else events_pb2.TASK_REASON_UNSPECIFIED
        return Decision(label, confidence, reason, SAMPLE_PRIORITY, answered)
    if threshold.prior and class_rank is not None:
        priority = prior_priority(class_rank, confidence)
    return Decision(None, confidence, events_pb2.TASK_REASON_UNCERTAIN, priority)


def label_state(probability: float, label: str, threshold: Threshold) -> bool | None:
    """One label's decision in a multi-label project: True (confident "on"), False (confident
    "off") or None (uncertain, also when the label has no calibrated thresholds): the
    threshold's own rule (core/thresholds.Threshold.label_state)."""
    return threshold.label_state(label, probability)


def decide_labels(
    prediction: events_pb2.Prediction, project: common_pb2.Project, threshold: Threshold, audit_seed: str
) -> Decision:
    """The decision for a multi-label project's `prediction` (see module doc). Scores are read by
    label name; a project label the prediction has no score for is uncertain."""
    labels = list(project.spec.labels)
    if prediction.no_model or not prediction.scores:
        return Decision(None, 0.0, events_pb2.TASK_REASON_NO_MODEL, 1.0, uncertain_labels=tuple(labels))
    probability = {s.label: float(s.probability) for s in prediction.scores}
    on: list[str] = []
    uncertain: list[str] = []
    confidence = 1.0
    priority = 0.0
    for label in labels:
        p = probability.get(label)
        if p is None:
            uncertain.append(label)
            priority = 1.0
            continue
        priority = max(priority, 1.0 - abs(2.0 * p - 1.0))
        state = label_state(p, label, threshold)
        if state is None:
            uncertain.append(label)
        elif state:
            on.append(label)
            confidence = min(confidence, p)
        else:
            confidence = min(confidence, 1.0 - p)
    if uncertain:
        return Decision(
            None, confidence, events_pb2.TASK_REASON_UNCERTAIN, priority, uncertain_labels=tuple(uncertain)
        )
    explore = min(1.0, max(0.0, threshold.exploration_rate))
    answered = min(1.0, explore + project.spec.audit_rate)
    u = audit_draw(prediction.ingested.item.item_id, audit_seed)
    if u < explore:
        return Decision(None, confidence, events_pb2.TASK_REASON_EXPLORATION, SAMPLE_PRIORITY, answered)
    reason = events_pb2.TASK_REASON_AUDIT if u < answered else events_pb2.TASK_REASON_UNSPECIFIED
    return Decision(None, confidence, reason, SAMPLE_PRIORITY, answered, auto_labels=tuple(on))
