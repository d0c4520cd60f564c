"""People's answers to the serving model's tasks, kept per project in Redis as the sample that
moves its threshold between trainings (retraining/calibration.move_threshold). Retraining writes
it; ingest reads the audits in it for ProjectStatus (audited precision against the target).

`<prefix>:answers:<project>` is a hash: item id ->
"model_version|confidence|correct|weight|audit|predicted_label",
written when a task's consensus is reached (the annotation carrying `consensus_labels`). Keyed by
item, so a redelivered annotation counts once, and the sample survives a restart. Only answers to
tasks routed by the model version now serving are kept; `reset` runs when another version starts
serving. Audits also count agreeing and disagreeing answers for the audited-precision metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import redis

from labelloop.core.redis_store import Keys, unavailable
from labelloop.v1 import events_pb2

__all__ = ["Answer", "AnswerLedger", "AnswerSample", "answer_of"]


@dataclass(frozen=True)
class Answer:
    """One completed task of the serving model: its confidence, whether people agreed with its
    top label, and the inverse of the probability that people answered this item."""

    model_version: int
    confidence: float
    correct: bool
    weight: float
    audit: bool
    predicted_label: str = ""  # the model's top label (whose class threshold applied); "" unknown

    def encode(self) -> str:
        return (
            f"{self.model_version}|{self.confidence!r}|{int(self.correct)}|{self.weight!r}|{int(self.audit)}"
            f"|{self.predicted_label}"
        )

    @staticmethod
    def decode(raw: str) -> Answer:
        # the label is last and may itself hold "|"; answers written before it have five fields
        version, confidence, correct, weight, audit, *label = raw.split("|", 5)
        return Answer(
            int(version), float(confidence), correct == "1", float(weight), audit == "1", "".join(label)
        )


def answer_of(annotation: events_pb2.AnnotationSubmitted) -> Answer | None:
    """The sample point an annotation gives: only the one that completes a task (consensus set)
    of a task routed by a model (a prediction present), else None."""
    if not annotation.consensus_labels or not annotation.predicted_label or annotation.model_version <= 0:
        return None
    probability = annotation.answer_probability
    weight = 1.0 / probability if 0.0 < probability < 1.0 else 1.0
    return Answer(
        model_version=int(annotation.model_version),
        confidence=min(1.0, max(0.0, float(annotation.predicted_confidence))),
        correct=annotation.predicted_label in annotation.consensus_labels,
        weight=weight,
        audit=annotation.reason == events_pb2.TASK_REASON_AUDIT,
        predicted_label=annotation.predicted_label,
    )


@dataclass(frozen=True)
class AnswerSample:
    """The answers held for one model version, as arrays for calibration."""

    confidences: np.ndarray
    correct: np.ndarray
    weights: np.ndarray
    predicted_labels: list[str]  # each answer's top label ("" when unknown: the global threshold)
    audits_agreeing: int
    audits: int


class AnswerLedger:
    """Idempotent per-item answers of the serving model, per project."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_prefix)

    def record(self, project_id: str, item_id: str, answer: Answer) -> None:
        try:
            self.client.hset(self.keys("answers", project_id), item_id, answer.encode())
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def sample(self, project_id: str, model_version: int) -> AnswerSample:
        """The answers to tasks routed by `model_version`."""
        try:
            raw = self.client.hvals(self.keys("answers", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        answers = [a for a in (Answer.decode(r.decode() if isinstance(r, bytes) else r) for r in raw)]
        answers = [a for a in answers if a.model_version == model_version]
        audits = [a for a in answers if a.audit]
        return AnswerSample(
            confidences=np.array([a.confidence for a in answers], dtype=np.float64),
            correct=np.array([a.correct for a in answers], dtype=bool),
            weights=np.array([a.weight for a in answers], dtype=np.float64),
            predicted_labels=[a.predicted_label for a in answers],
            audits_agreeing=sum(1 for a in audits if a.correct),
            audits=len(audits),
        )

    def reset(self, project_id: str) -> None:
        """Forget every answer (another model version serves from now on)."""
        try:
            self.client.delete(self.keys("answers", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
