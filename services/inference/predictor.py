"""The inference handler: items in, predictions out, grouped by project's model; each prediction
also carries the votes of the project's rules (`labelloop.core.rules`), applied in-process."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from labelloop.core import metrics
from labelloop.core.errors import NotFound, PoisonMessage
from labelloop.core.media import model_input
from labelloop.core.projects import ProjectStore
from labelloop.core.rules import RuleStore
from labelloop.core.stream import Batch, Event, now_timestamp
from labelloop.core.topics import PREDICTIONS, item_key
from labelloop.core.triton_client import Answer, ModelMissing, TritonClassifier
from labelloop.inference.cascade import EncoderStage
from labelloop.inference.prediction_wire import encode_predictions
from labelloop.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)


#: (project modality, item content) pairs that have a model: inline text, and images by reference
#: (the model reads the URI; core/media.py `model_input`). Others go to the dead-letter topic (projects
#: of other modalities are refused at creation: core/projects.py `MODEL_MODALITIES`).
MODEL_PATHS = {(common_pb2.MODALITY_TEXT, "text"), (common_pb2.MODALITY_IMAGE, "media")}


class Predictor:
    """Handles batches of `items`: one Triton round per project model, then `predictions` with the
    votes of the project's rules (none when `rules` is None or the project has none)."""

    def __init__(
        self,
        projects: ProjectStore,
        classifier: TritonClassifier,
        batch_size: int,
        cascade: EncoderStage | None = None,
        rules: RuleStore | None = None,
    ) -> None:
        self.projects = projects
        self.rules = rules
        self.classifier = classifier
        self.batch_size = batch_size
        self.cascade = cascade
        self._last_version: dict[str, int] = {}

    def __call__(self, batch: Batch) -> None:
        groups: dict[str, list[Event]] = defaultdict(list)
        for event in batch.events:
            item = event.message.item
            try:
                project = self.projects.get(item.project_id)
            except NotFound:
                batch.dead_letter(
                    event, PoisonMessage("UnknownProject", f"project {item.project_id!r} does not exist")
                )
                continue
            if (project.spec.modality, item.content.WhichOneof("body")) not in MODEL_PATHS:
                batch.dead_letter(
                    event,
                    PoisonMessage("UnsupportedModality", "only text and image items have a model path yet"),
                )
                continue
            groups[project.spec.project_id].append(event)
        for project_id, events in groups.items():
            project = self.projects.get(project_id)
            self._predict_project(batch, project, events)

    def _second_stage(self, model: str, answer: Answer, events: list[Event]) -> np.ndarray | None:
        """For a cascade model (one with ESCALATE): the answer stage per item, after replacing
        the escalated rows of `answer` with the encoder stage's (when it can answer now). None
        for a model without a cascade."""
        if answer.escalate is None:
            return None
        stages = np.full(len(events), events_pb2.ANSWER_STAGE_FAST, dtype=np.int64)
        rows = np.nonzero(answer.escalate)[0]
        if len(rows) and self.cascade is not None:
            texts = [events[i].message.item.content.text for i in rows]
            probs = self.cascade.answer(model, answer.model_version, texts)
            if probs is not None:
                answer.probabilities[rows] = probs
                stages[rows] = events_pb2.ANSWER_STAGE_ENCODER
        return stages

    def _predict_project(self, batch: Batch, project: common_pb2.Project, events: list[Event]) -> None:
        model = project.spec.model_name
        labels = list(project.spec.labels)
        at = now_timestamp()
        answer = None
        if self.classifier.model_ready(model):
            try:
                answer = self.classifier.predict(
                    model, [model_input(e.message.item) for e in events], self.batch_size
                )
            except ModelMissing:
                answer = None
        if answer is not None and answer.probabilities.shape[1] != len(labels):
            raise PoisonMessage(
                "ModelMismatch",
                f"model {model} gives {answer.probabilities.shape[1]} classes, project has {len(labels)} labels",
            )
        stages = self._second_stage(model, answer, events) if answer is not None else None
        keys = [item_key(project.spec.project_id, e.message.item.item_id) for e in events]
        votes = self._rule_votes(project.spec.project_id, events)
        if answer is None:
            for key, event, cast in zip(keys, events, votes, strict=True):
                batch.emit(
                    PREDICTIONS,
                    key,
                    events_pb2.Prediction(ingested=event.message, predicted_at=at, no_model=True, votes=cast),
                )
        else:
            common = events_pb2.Prediction(
                model_name=model, model_version=answer.model_version, predicted_at=at
            )
            encoded = encode_predictions(
                [e.raw for e in events], common, labels, answer.probabilities, stages
            )
            for key, value, cast in zip(keys, encoded, votes, strict=True):
                if cast:  # a repeated field's records may follow the rest of the message
                    value += events_pb2.Prediction(votes=cast).SerializeToString()
                batch.emit(PREDICTIONS, key, value)
        metrics.PREDICTIONS.labels(project.spec.project_id, model if answer else "none").inc(len(events))
        if stages is not None:
            escalated = int((stages == events_pb2.ANSWER_STAGE_ENCODER).sum())
            metrics.CASCADE_ITEMS.labels(project.spec.project_id, "encoder").inc(escalated)
            metrics.CASCADE_ITEMS.labels(project.spec.project_id, "fast").inc(len(events) - escalated)
        version = answer.model_version if answer else 0
        if self._last_version.get(project.spec.project_id) != version:
            # Only logged: what serves is the retraining lifecycle's record (ServingVersions).
            self._last_version[project.spec.project_id] = version
            log.info("project %s: serving version %s", project.spec.project_id, version or "none")

    def _rule_votes(self, project_id: str, events: list[Event]) -> list[list[events_pb2.SourceVote]]:
        """Per event, the votes of the project's rules that match its item."""
        if self.rules is None:
            return [[] for _ in events]
        compiled = self.rules.compiled(project_id)
        if not len(compiled):
            return [[] for _ in events]
        votes = [compiled.votes(e.message.item) for e in events]
        for cast in votes:
            for vote in cast:
                metrics.RULE_VOTES.labels(project_id, vote.source).inc()
        return votes
