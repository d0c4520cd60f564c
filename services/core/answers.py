"""People's answers to the serving model's tasks, kept per project in Redis as the sample that
moves its threshold between trainings (retraining/calibration.move_threshold). Retraining writes
it; ingest reads the audits in it for ProjectStatus (audited precision against the target).

`<prefix>:answers:<project>` is a hash: item id ->
"model_version|confidence|correct|weight|audit|predicted_label", where `correct` is 1 or 0,
followed by "/" and the probability that people's label is right when it is below 1,
written when a task's consensus is reached (the annotation carrying `consensus_labels`). Keyed by
item, so a redelivered annotation counts once, and the sample survives a restart. Only answers to
tasks routed by the model version now serving are kept; `reset` runs when another version starts
serving. Audits also count agreeing and disagreeing answers for the audited-precision metric.

Multi-label projects keep theirs in `<prefix>:label_set_answers:<project>` (item id -> JSON: the
routing prediction's probability per label, the labels people agreed on, the weight, audit or
not): their per-label pairs move on exact match (retraining/calibration.move_label_bounds), so
each answer keeps every label's probability, not only the top one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis

from labelloop.core.consensus_noise import corrected_scores
from labelloop.core.redis_store import Keys, unavailable
from labelloop.core.thresholds import Threshold
from labelloop.v1 import events_pb2

__all__ = [
    "Answer",
    "AnswerLedger",
    "AnswerSample",
    "LabelSetAnswer",
    "LabelSetSample",
    "answer_of",
    "label_set_answer_of",
]


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
    # The probability that people's label is right (core/consensus_noise.py; 1: taken as true)
    label_probability: float = 1.0

    def encode(self) -> str:
        correct = str(int(self.correct))
        if self.label_probability < 1.0:
            correct += f"/{self.label_probability!r}"
        return (
            f"{self.model_version}|{self.confidence!r}|{correct}|{self.weight!r}|{int(self.audit)}"
            f"|{self.predicted_label}"
        )

    @staticmethod
    def decode(raw: str) -> Answer:
        # the label is last and may itself hold "|"; answers written before it have five fields
        version, confidence, correct, weight, audit, *label = raw.split("|", 5)
        correct, _, probability = correct.partition("/")
        return Answer(
            int(version),
            float(confidence),
            correct == "1",
            float(weight),
            audit == "1",
            "".join(label),
            float(probability) if probability else 1.0,
        )


def answer_of(annotation: events_pb2.AnnotationSubmitted) -> Answer | None:
    """The sample point an annotation gives: only the one that completes a task (consensus set)
    of a task routed by a model (a prediction present), else None. Multi-label answers (every
    label's probability present) give a :class:`LabelSetAnswer` instead (`label_set_answer_of`)."""
    if (
        not annotation.consensus_labels
        or not annotation.predicted_label
        or annotation.model_version <= 0
        or annotation.predicted_scores
    ):
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
class LabelSetAnswer:
    """One completed task of a multi-label project's serving model: its probability per label at
    routing time, the labels people agreed on (none: no label applies), and the inverse of the
    probability that people answered this item."""

    model_version: int
    probabilities: dict[str, float]
    labels: tuple[str, ...]
    weight: float
    audit: bool

    def agrees(self, threshold: Threshold) -> bool:
        """True when people turned on exactly the labels that `threshold`'s pairs turn on (an
        audit's verdict on the auto-label, judged against the pairs serving now)."""
        on = {x for x, p in self.probabilities.items() if threshold.label_state(x, p)}
        return on == set(self.labels)

    def encode(self) -> str:
        return json.dumps(
            {
                "v": self.model_version,
                "p": self.probabilities,
                "l": list(self.labels),
                "w": self.weight,
                "a": int(self.audit),
            },
            separators=(",", ":"),
        )

    @staticmethod
    def decode(raw: str) -> LabelSetAnswer:
        data = json.loads(raw)
        return LabelSetAnswer(
            int(data["v"]),
            {str(k): float(v) for k, v in data["p"].items()},
            tuple(str(x) for x in data["l"]),
            float(data["w"]),
            bool(data["a"]),
        )


def label_set_answer_of(annotation: events_pb2.AnnotationSubmitted) -> LabelSetAnswer | None:
    """The sample point a multi-label annotation gives: only the one that completes a task (a
    consensus on labels, or on none) routed by a model with every label's probability, else
    None."""
    completes = bool(annotation.consensus_labels) or annotation.consensus_no_label
    if not completes or not annotation.predicted_scores or annotation.model_version <= 0:
        return None
    probability = annotation.answer_probability
    return LabelSetAnswer(
        model_version=int(annotation.model_version),
        probabilities={
            s.label: min(1.0, max(0.0, float(s.probability))) for s in annotation.predicted_scores
        },
        labels=tuple(annotation.consensus_labels),
        weight=1.0 / probability if 0.0 < probability < 1.0 else 1.0,
        audit=annotation.reason == events_pb2.TASK_REASON_AUDIT,
    )


@dataclass(frozen=True)
class LabelSetSample:
    """The multi-label answers held for one model version, as arrays in the project's label order
    (a label missing from an answer's probabilities reads 0)."""

    probabilities: np.ndarray  # (n, K)
    truth: np.ndarray  # (n, K) booleans: people's labels
    weights: np.ndarray
    answers: list[LabelSetAnswer]

    def audits(self, threshold: Threshold) -> tuple[int, int]:
        """(agreeing, all) audits, each judged by :meth:`LabelSetAnswer.agrees`."""
        audits = [a for a in self.answers if a.audit]
        return sum(1 for a in audits if a.agrees(threshold)), len(audits)


@dataclass(frozen=True)
class AnswerSample:
    """The answers held for one model version, as arrays for calibration."""

    confidences: np.ndarray
    correct: np.ndarray
    weights: np.ndarray
    predicted_labels: list[str]  # each answer's top label ("" when unknown: the global threshold)
    audits_agreeing: int
    audits: int
    # each answer's probability that people's label is right (core/consensus_noise.py)
    label_probabilities: np.ndarray | None = None
    audit_mask: np.ndarray | None = None  # which answers are audits

    def scores(self) -> np.ndarray:
        """Each answer's agreement as 1/0, or its noise-corrected score where people's label is
        right with a probability below 1 (core/consensus_noise.corrected_scores)."""
        if self.label_probabilities is None:
            return self.correct
        return corrected_scores(self.correct, self.label_probabilities)

    def audited_precision(self) -> float:
        """The audits' mean score, within [0, 1]: the share that agreed when people's labels are
        taken as true (0 with no audits)."""
        if not self.audits or self.audit_mask is None:
            return self.audits_agreeing / self.audits if self.audits else 0.0
        return float(np.clip(np.mean(self.scores()[self.audit_mask]), 0.0, 1.0))


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
            label_probabilities=np.array([a.label_probability for a in answers], dtype=np.float64),
            audit_mask=np.array([a.audit for a in answers], dtype=bool),
            weights=np.array([a.weight for a in answers], dtype=np.float64),
            predicted_labels=[a.predicted_label for a in answers],
            audits_agreeing=sum(1 for a in audits if a.correct),
            audits=len(audits),
        )

    def record_label_set(self, project_id: str, item_id: str, answer: LabelSetAnswer) -> None:
        try:
            self.client.hset(self.keys("label_set_answers", project_id), item_id, answer.encode())
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def label_set_sample(self, project_id: str, model_version: int, labels: Sequence[str]) -> LabelSetSample:
        """The multi-label answers to tasks routed by `model_version`."""
        try:
            raw = self.client.hvals(self.keys("label_set_answers", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        answers = [LabelSetAnswer.decode(r.decode() if isinstance(r, bytes) else r) for r in raw]
        answers = [a for a in answers if a.model_version == model_version]
        names = [str(x) for x in labels]
        return LabelSetSample(
            probabilities=np.array(
                [[a.probabilities.get(x, 0.0) for x in names] for a in answers], dtype=np.float64
            ).reshape(len(answers), len(names)),
            truth=np.array([[x in a.labels for x in names] for a in answers], dtype=bool).reshape(
                len(answers), len(names)
            ),
            weights=np.array([a.weight for a in answers], dtype=np.float64),
            answers=answers,
        )

    def reset(self, project_id: str) -> None:
        """Forget every answer (another model version serves from now on)."""
        try:
            self.client.delete(self.keys("answers", project_id), self.keys("label_set_answers", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
