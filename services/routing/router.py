"""The routing handler: predictions in; auto labels to `labels`, human work to `tasks`, and
withdrawals of waiting tasks that a newer model auto-labels (rescores, see human_tasks/handler.py).
Opt-in (`LABELLOOP_LABEL_MODEL_MIN_JUDGED`): items rules voted on are routed on the label model's
posterior instead of the model's probabilities."""

from __future__ import annotations

from labelloop.core import metrics
from labelloop.core.errors import NotFound, PoisonMessage
from labelloop.core.label_model import combined_scores
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.progress import Progress
from labelloop.core.projects import ProjectStore
from labelloop.core.stream import Batch, now_timestamp
from labelloop.core.thresholds import ThresholdStore
from labelloop.core.topics import LABELS, MODELS, PREDICTIONS, TASKS, item_key
from labelloop.routing.decisions import decide
from labelloop.v1 import common_pb2, events_pb2


class Router:
    """Handles batches of `predictions` (and `models` events, which refresh thresholds)."""

    def __init__(
        self,
        projects: ProjectStore,
        thresholds: ThresholdStore,
        progress: Progress,
        audit_seed: str,
        label_model: LabelModelStore | None = None,
        label_model_min_judged: int = 0,
    ) -> None:
        self.projects = projects
        self.thresholds = thresholds
        self.progress = progress
        self.audit_seed = audit_seed
        self.label_model = label_model
        self.label_model_min_judged = label_model_min_judged

    def _combined(
        self, prediction: events_pb2.Prediction, project: common_pb2.Project
    ) -> events_pb2.Prediction:
        """The prediction with its scores replaced by the label model's posterior when trusted
        sources voted on the item (see `label_model.combined_scores`); else unchanged."""
        if self.label_model is None or not len(prediction.votes) or not len(prediction.scores):
            return prediction
        labels = list(project.spec.labels)
        if [s.label for s in prediction.scores] != labels:
            return prediction
        model = self.label_model.cached(project.spec.project_id, labels)
        votes = {v.source: v.label for v in prediction.votes}
        posterior = combined_scores(
            model, votes, [s.probability for s in prediction.scores], self.label_model_min_judged
        )
        if posterior is None:
            return prediction
        out = events_pb2.Prediction()
        out.CopyFrom(prediction)
        for score, probability in zip(out.scores, posterior, strict=True):
            score.probability = probability
        return out

    def __call__(self, batch: Batch) -> None:
        at = now_timestamp()
        labeled: list[tuple[str, str, str]] = []
        for event in batch.events:
            if event.topic is MODELS:
                self.thresholds.invalidate(event.message.project_id)
                continue
            if event.topic is not PREDICTIONS:
                continue
            prediction: events_pb2.Prediction = event.message
            item = prediction.ingested.item
            try:
                project = self.projects.get(item.project_id)
            except NotFound:
                batch.dead_letter(
                    event, PoisonMessage("UnknownProject", f"project {item.project_id!r} does not exist")
                )
                continue
            prediction = self._combined(prediction, project)
            threshold = self.thresholds.get(project.spec.project_id)
            metrics.THRESHOLD.labels(project.spec.project_id).set(threshold.threshold)
            decision = decide(prediction, project, threshold, self.audit_seed)
            label = None
            if decision.auto_label is not None:
                label = events_pb2.LabelFinalized(
                    ingested=prediction.ingested,
                    labels=[decision.auto_label],
                    source=common_pb2.LABEL_SOURCE_MODEL,
                    confidence=decision.confidence,
                    model_name=prediction.model_name,
                    model_version=prediction.model_version,
                    finalized_at=at,
                    threshold=threshold.for_label(decision.auto_label),
                    audited=decision.task_reason == events_pb2.TASK_REASON_AUDIT,
                )
            if prediction.ingested.rescore:
                # A waiting item sent back for a new model's opinion: its task already exists.
                # Auto-labeled now, the task is withdrawn (by human-tasks, who publishes the
                # label only if nobody has started it); otherwise it keeps waiting.
                if label is not None:
                    label.ingested.rescore = False
                    label.audited = False
                    withdrawal = events_pb2.TaskRouted(
                        task_id=item.item_id,
                        ingested=prediction.ingested,
                        prediction=prediction,
                        routed_at=at,
                        withdraw_for=label,
                    )
                    batch.emit(TASKS, item_key(item.project_id, item.item_id), withdrawal)
                continue
            if label is not None:
                batch.emit(LABELS, item_key(item.project_id, item.item_id), label)
                labeled.append((project.spec.project_id, item.item_id, "model"))
                metrics.ROUTING_DECISIONS.labels(project.spec.project_id, "auto").inc()
                metrics.LABELS_FINALIZED.labels(project.spec.project_id, "model").inc()
            else:
                metrics.ROUTING_DECISIONS.labels(project.spec.project_id, "human").inc()
            if decision.task_reason != events_pb2.TASK_REASON_UNSPECIFIED:
                audit = decision.task_reason == events_pb2.TASK_REASON_AUDIT
                # Audits need as many annotators as labeling tasks: one noisy person cannot tell
                # a 0.95-precise model from a worse one.
                task = events_pb2.TaskRouted(
                    task_id=f"{item.item_id}:audit" if audit else item.item_id,
                    ingested=prediction.ingested,
                    prediction=prediction,
                    reason=decision.task_reason,  # type: ignore[arg-type]
                    priority=decision.priority,
                    annotators_required=project.spec.annotators_per_task,
                    routed_at=at,
                    answer_probability=decision.answer_probability,
                )
                batch.emit(TASKS, item_key(item.project_id, item.item_id), task)
                if audit:
                    metrics.ROUTING_DECISIONS.labels(project.spec.project_id, "audit").inc()
                elif decision.task_reason == events_pb2.TASK_REASON_EXPLORATION:
                    metrics.ROUTING_DECISIONS.labels(project.spec.project_id, "exploration").inc()
        if labeled:
            self.progress.record_labels(labeled)
