"""The routing handler: predictions in; auto labels to `labels`, human work to `tasks`, and
withdrawals of waiting tasks that a newer model auto-labels (rescores, see human_tasks/handler.py).

Under a threshold calibrated on the label model's posterior (`Threshold.sources_min_judged` > 0,
set by retraining/posterior.py once a project has other sources), items other sources voted on
are routed on that posterior instead of the model's probabilities. A vote cast after routing
decided (the LLM source's, on `votes`, carrying the prediction it was asked about) routes the
item again with the vote counted: when the posterior now clears the threshold, the waiting task
is withdrawn with the auto-label (human-tasks publishes it only if nobody has started the task).
A withdrawal drawn for an audit carries the audit's task (queued once the label is published), so
every auto-label, on arrival, after a rescore or after a late vote, is audited with the same known
probability. A withdrawal (after a rescore or a late vote) must also reach the threshold's
rescore thresholds, calibrated on items people got with probability 1, which waiting tasks are
(`Threshold.for_rescores`, retraining/evaluation.calibrate_rescores).
`LABELLOOP_LABEL_MODEL_MIN_JUDGED` (opt-in, not calibrated) forces posterior routing under any
threshold."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from labelloop.core import metrics
from labelloop.core.errors import NotFound, PoisonMessage
from labelloop.core.final_labels import Claim, FinalLabelWriter, Outcome, published
from labelloop.core.label_model import combined_scores
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.projects import ProjectStore, is_multi_label
from labelloop.core.stream import Batch, now_timestamp
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import MODELS, PREDICTIONS, TASKS, VOTES, item_key
from labelloop.routing.decisions import Decision, decide, decide_labels
from labelloop.routing.prior_order import PriorRanks
from labelloop.v1 import common_pb2, events_pb2


class Router:
    """Handles batches of `predictions` (and `models` events, which refresh thresholds).

    Every outcome goes through the final-label fence (core/final_labels.py) in one round trip per
    batch: an auto-label is published only if the item has no other final label and was not
    routed to people before (a redelivered prediction after a model or threshold change keeps
    the first decision: its task is sent again, idempotently), and an item routed to people is
    reserved for them, unless it already has a final label (then no task)."""

    def __init__(
        self,
        projects: ProjectStore,
        thresholds: ThresholdStore,
        writer: FinalLabelWriter,
        audit_seed: str,
        label_model: LabelModelStore | None = None,
        label_model_min_judged: int = 0,
        prior_ranks: PriorRanks | None = None,
    ) -> None:
        self.projects = projects
        self.thresholds = thresholds
        self.writer = writer
        self.audit_seed = audit_seed
        self.label_model = label_model
        self.label_model_min_judged = label_model_min_judged
        self.prior_ranks = prior_ranks  # the zero-shot prior's order of people's work (None: margin)

    def _combined(
        self, prediction: events_pb2.Prediction, project: common_pb2.Project, threshold: Threshold
    ) -> events_pb2.Prediction:
        """The prediction with its scores replaced by the label model's posterior when trusted
        sources voted on the item (see `label_model.combined_scores`) and `threshold` was
        calibrated on it (or the opt-in setting forces it); else unchanged."""
        min_judged = threshold.sources_min_judged or self.label_model_min_judged
        if min_judged <= 0 or self.label_model is None:
            return prediction
        if not len(prediction.votes) or not len(prediction.scores):
            return prediction
        if is_multi_label(project):  # rules vote one label; the label model is single-label
            return prediction
        labels = list(project.spec.labels)
        if [s.label for s in prediction.scores] != labels:
            return prediction
        model = self.label_model.cached(project.spec.project_id, labels)
        votes = {v.source: v.label for v in prediction.votes}
        posterior = combined_scores(model, votes, [s.probability for s in prediction.scores], min_judged)
        if posterior is None:
            return prediction
        out = events_pb2.Prediction()
        out.CopyFrom(prediction)
        for score, probability in zip(out.scores, posterior, strict=True):
            score.probability = probability
        return out

    def __call__(self, batch: Batch) -> None:
        at = now_timestamp()
        routed: list[tuple[events_pb2.Prediction, common_pb2.Project, Decision]] = []
        claims: list[Claim] = []
        for event in batch.events:
            if event.topic is MODELS:
                self.thresholds.invalidate(event.message.project_id)
                continue
            if event.topic is VOTES:
                self._route_again(batch, event.message, at)
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
            threshold = self.thresholds.get(project.spec.project_id)
            prediction = self._combined(prediction, project, threshold)
            metrics.THRESHOLD.labels(project.spec.project_id).set(threshold.threshold)
            multi = is_multi_label(project)
            if prediction.ingested.HasField("rescore") and not multi:
                # a waiting task, which an earlier model was unsure of: the rule calibrated on
                # such items applies too (core/thresholds.Threshold.for_rescores)
                threshold = threshold.for_rescores()
            if multi:
                decision = decide_labels(prediction, project, threshold, self.audit_seed)
            else:
                decision = decide(
                    prediction, project, threshold, self.audit_seed, self._prior_rank(prediction, threshold)
                )
            label = None
            accepted = decision.accepted
            if accepted is not None:
                label = events_pb2.LabelFinalized(
                    ingested=prediction.ingested,
                    labels=list(accepted),
                    source=common_pb2.LABEL_SOURCE_MODEL,
                    confidence=decision.confidence,
                    model_name=prediction.model_name,
                    model_version=prediction.model_version,
                    finalized_at=at,
                    threshold=0.0 if multi else threshold.for_label(accepted[0]),
                    audited=decision.task_reason == events_pb2.TASK_REASON_AUDIT,
                )
            if prediction.ingested.HasField("rescore"):
                # A waiting item sent back for a new model's opinion: its task already exists.
                # Auto-labeled now, the task is withdrawn (by human-tasks, who publishes the
                # label only if nobody has started it) and audited when drawn for an audit;
                # otherwise (exploration's draw included) it keeps waiting.
                if label is not None:
                    label.ingested.arrival.SetInParent()  # the label is of the item, not the command
                    self._emit_withdrawal(batch, prediction, project, decision, label, at)
                continue
            if label is None and decision.task_reason == events_pb2.TASK_REASON_UNSPECIFIED:
                continue
            routed.append((prediction, project, decision))
            claims.append(
                Claim.final(label) if label is not None else Claim.people(item.project_id, item.item_id)
            )
        # the decision of an earlier, aborted attempt at the same prediction (see FinalLabelWriter.claim)
        by_item = {
            (p.ingested.item.project_id, p.ingested.item.item_id): (p, j)
            for j, (p, _, _) in enumerate(routed)
        }

        def relabel(claim: Claim, labels: list[str]) -> events_pb2.LabelFinalized | None:
            prediction, j = by_item[(claim.project_id, claim.item_id)]
            return self._model_label(prediction, labels, routed[j][1], at)

        outcomes = self.writer.claim(claims, batch.emit, relabel, batch.claims)
        confirmed = published(claims, outcomes)
        if confirmed:
            batch.after_flush(lambda: self.writer.confirm(confirmed))
        for (prediction, project, decision), claim, outcome in zip(routed, claims, outcomes, strict=True):
            project_id = project.spec.project_id
            if claim.label is not None:
                if outcome is Outcome.NEW:
                    metrics.ROUTING_DECISIONS.labels(project_id, "auto").inc()
                if outcome is Outcome.PEOPLE:  # routed to people before: it stays with them
                    self._emit_task(
                        batch, prediction, project, decision, events_pb2.TASK_REASON_UNCERTAIN, at
                    )
                elif outcome is not Outcome.CONFLICT and decision.task_reason == events_pb2.TASK_REASON_AUDIT:
                    self._emit_task(batch, prediction, project, decision, decision.task_reason, at)
                    if outcome is Outcome.NEW:
                        metrics.ROUTING_DECISIONS.labels(project_id, "audit").inc()
            elif outcome is not Outcome.FINAL:
                if outcome is Outcome.NEW:
                    metrics.ROUTING_DECISIONS.labels(project_id, "human").inc()
                    if decision.task_reason == events_pb2.TASK_REASON_EXPLORATION:
                        metrics.ROUTING_DECISIONS.labels(project_id, "exploration").inc()
                self._emit_task(batch, prediction, project, decision, decision.task_reason, at)

    def _model_label(
        self, prediction: events_pb2.Prediction, labels: list[str], project: common_pb2.Project, at: Timestamp
    ) -> events_pb2.LabelFinalized | None:
        """The model's final label `labels` for `prediction`, as an earlier attempt decided it
        (its confidence: the labels' probability, the least sure one's on multi-label), or None
        when the prediction does not score them."""
        scores = {s.label: s.probability for s in prediction.scores}
        multi = is_multi_label(project)
        if (not labels and not multi) or any(label not in scores for label in labels):
            return None
        threshold = self.thresholds.get(project.spec.project_id)
        if multi:
            on = set(labels)
            confidence = min(p if name in on else 1.0 - p for name, p in scores.items())
        else:
            confidence = scores[labels[0]]
        return events_pb2.LabelFinalized(
            ingested=prediction.ingested,
            labels=labels,
            source=common_pb2.LABEL_SOURCE_MODEL,
            confidence=confidence,
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            finalized_at=at,
            threshold=0.0 if multi else threshold.for_label(labels[0]),
        )

    def _route_again(self, batch: Batch, cast: events_pb2.VoteCast, at: Timestamp) -> None:
        """A vote cast after routing decided: decide again on the prediction it carries with the
        vote added; when that auto-labels the item, withdraw its waiting task with the label (an
        item routing auto-labeled before, or whose task people started, keeps its label: the
        withdrawal finds no untouched task). Exploration keeps its share of such items with
        people and audits take theirs, as for any item (:meth:`_emit_withdrawal`)."""
        if not cast.HasField("prediction") or cast.prediction.ingested.HasField("rescore"):
            return
        item = cast.prediction.ingested.item
        try:
            project = self.projects.get(item.project_id)
        except NotFound:
            return  # the project was deleted since; its prediction was dead-lettered
        threshold = self.thresholds.get(item.project_id)
        if not (threshold.sources_min_judged or self.label_model_min_judged):
            return
        prediction = events_pb2.Prediction()
        prediction.CopyFrom(cast.prediction)
        if all(v.source != cast.vote.source for v in prediction.votes):
            prediction.votes.append(cast.vote)
        combined = self._combined(prediction, project, threshold)
        if combined is prediction:
            return
        rule = threshold.for_rescores()  # only a waiting task is withdrawn: a rescore's rule
        decision = decide(combined, project, rule, self.audit_seed)
        if decision.auto_label is None:
            return
        label = events_pb2.LabelFinalized(
            ingested=combined.ingested,
            labels=[decision.auto_label],
            source=common_pb2.LABEL_SOURCE_MODEL,
            confidence=decision.confidence,
            model_name=combined.model_name,
            model_version=combined.model_version,
            finalized_at=at,
            threshold=rule.for_label(decision.auto_label),
        )
        metrics.ROUTING_DECISIONS.labels(item.project_id, "auto_after_vote").inc()
        self._emit_withdrawal(batch, combined, project, decision, label, at)

    def _emit_withdrawal(
        self,
        batch: Batch,
        prediction: events_pb2.Prediction,
        project: common_pb2.Project,
        decision: Decision,
        label: events_pb2.LabelFinalized,
        at: Timestamp,
    ) -> None:
        """Withdraw the item's waiting task for `label` (a rescore's or a late vote's auto-label).
        When routing's draw selected the item for an audit (`decision.task_reason`), the label is
        `audited` and the withdrawal carries its audit task, which human-tasks queues once the
        fence publishes the label: withdrawn auto-labels, the least sure of a young model's, are
        audited with the same known probability as the labels routing gives on arrival."""
        item = prediction.ingested.item
        audit = decision.task_reason == events_pb2.TASK_REASON_AUDIT
        label.audited = audit
        withdrawal = events_pb2.TaskRouted(
            task_id=item.item_id,
            ingested=prediction.ingested,
            prediction=prediction,
            routed_at=at,
            withdraw=events_pb2.Withdrawal(label=label),
        )
        if audit:
            task = self._task(prediction, project, decision, decision.task_reason, at)
            task.ingested.CopyFrom(label.ingested)  # the item's audit, not the rescore command
            withdrawal.withdraw.audit.CopyFrom(task)
        batch.emit(TASKS, item_key(item.project_id, item.item_id), withdrawal)

    def _prior_rank(self, prediction: events_pb2.Prediction, threshold: Threshold) -> int | None:
        """The zero-shot prior's class rank of a new item it does not admit (None otherwise)."""
        if self.prior_ranks is None or not threshold.prior or not len(prediction.scores):
            return None
        if prediction.ingested.HasField("rescore"):
            return None
        top = max(prediction.scores, key=lambda s: s.probability)
        if threshold.admits(top.label, top.probability):
            return None
        item = prediction.ingested.item
        return self.prior_ranks.next(item.project_id, prediction.model_version, top.label)

    @classmethod
    def _emit_task(
        cls,
        batch: Batch,
        prediction: events_pb2.Prediction,
        project: common_pb2.Project,
        decision: Decision,
        reason: int,
        at: Timestamp,
    ) -> None:
        """Emit :meth:`_task` to `tasks`."""
        item = prediction.ingested.item
        batch.emit(
            TASKS,
            item_key(item.project_id, item.item_id),
            cls._task(prediction, project, decision, reason, at),
        )

    @staticmethod
    def _task(
        prediction: events_pb2.Prediction,
        project: common_pb2.Project,
        decision: Decision,
        reason: int,
        at: Timestamp,
    ) -> events_pb2.TaskRouted:
        """A task for people (idempotent downstream by task id): an audit of an auto-label
        (task id `<item>:audit`), or the item's own labeling task. Audits need as many annotators
        as labeling tasks: one noisy person cannot tell a 0.95-precise model from a worse one. The
        task carries the probability routing sent the item to people (calibration's weight); an
        item that stays with people from an earlier routing keeps 1."""
        item = prediction.ingested.item
        audit = reason == events_pb2.TASK_REASON_AUDIT
        task = events_pb2.TaskRouted(
            task_id=f"{item.item_id}:audit" if audit else item.item_id,
            ingested=prediction.ingested,
            prediction=prediction,
            reason=reason,  # type: ignore[arg-type]
            priority=decision.priority,
            annotators_required=project.spec.annotators_per_task,
            routed_at=at,
            enqueue=events_pb2.Enqueue(),
            answer_probability=decision.answer_probability if reason == decision.task_reason else 1.0,
            uncertain_labels=decision.uncertain_labels,
            audited_labels=(decision.accepted or ()) if audit else (),
        )
        return task
