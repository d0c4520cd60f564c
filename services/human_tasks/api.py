"""The annotator-facing gRPC API (HumanTaskService) and what an answer sets off: the
`annotations` event, and on consensus the human final label on `labels` (through the final-label
fence, core/final_labels.py), and each annotator's agreement counters (agreement.py).

Audits and reviews never publish a final label: an audit's consensus measures the model, a
review's consensus (reason REVIEW, `reviewed_labels` set) corrects the training set only
(retraining/dataset.py reads it from `annotations`).

An answer is recorded in Redis first (atomically, so a lease is answered once), then its events
are produced and flushed, then the lease is marked produced. A repeated submit of a lease whose
events were not produced (a crash or a Kafka outage in between) produces them then, so nothing
is lost and the client's retry is safe.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from labelloop.core import access, metrics
from labelloop.core.errors import FailedPrecondition, InvalidArgument, LabelloopError
from labelloop.core.final_labels import FinalLabelWriter
from labelloop.core.identifiers import check_lease_id
from labelloop.core.label_log import PublishedAnswers
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.media import MediaStore
from labelloop.core.projects import ProjectStore, is_multi_label
from labelloop.core.queues import QueueKeys, member_of, read_stats
from labelloop.core.stream import EventProducer, now_timestamp
from labelloop.core.topics import ANNOTATIONS, item_key
from labelloop.human_tasks.agreement import AgreementStore, agreement_updates
from labelloop.human_tasks.consensus import (
    Verdict,
    decode_labels,
    encode_labels,
    majority,
    per_label_majority,
)
from labelloop.human_tasks.media import check_live_lease, read_task_media
from labelloop.human_tasks.queue import TaskQueue, task_state
from labelloop.human_tasks.regions import check_regions, decode_regions, encode_regions, regions_for_label
from labelloop.v1 import common_pb2, events_pb2, human_tasks_pb2, human_tasks_pb2_grpc

log = logging.getLogger(__name__)


def caller_for_lease(lease: dict[str, str], requested_annotator: str) -> str:
    """Who answers or releases under `lease`: the caller's own annotator id (from its token,
    `access.annotator_id`; an admin naming nobody acts for the lease's holder), once the caller is
    scoped to the lease's project. The queue refuses a lease held by someone else
    (FAILED_PRECONDITION, as for a stale one)."""
    caller = access.current()
    access.require_project(caller, lease.get("project", ""))
    if caller.role == access.ADMIN and not requested_annotator:
        return lease.get("annotator", "") or caller.name
    return access.annotator_id(caller, requested_annotator)


class HumanTaskApi(human_tasks_pb2_grpc.HumanTaskServiceServicer):
    """LeaseTask, SubmitAnnotation, ReleaseTask, GetQueueStats, GetTaskMedia. The annotator is the caller's
    token's (an admin may name one); a request's `annotator_id` naming someone else is refused."""

    def __init__(
        self,
        queue: TaskQueue,
        projects: ProjectStore,
        writer: FinalLabelWriter,
        producer: EventProducer,
        label_model: LabelModelStore | None = None,
        agreement: AgreementStore | None = None,
        media: MediaStore | None = None,
        answers_log: PublishedAnswers | None = None,
    ) -> None:
        self.media = media
        # asked before an answer's events are produced again (_redo): is its record in the log?
        self.answers_log = answers_log
        self.queue = queue
        self.projects = projects
        self.writer = writer
        self.producer = producer
        self.label_model = label_model
        self.agreement = agreement
        self._publish_lock = threading.Lock()  # one open transaction at a time

    @contextlib.contextmanager
    def _publishing(self) -> Iterator[None]:
        """Publish the events sent inside together. With a transactional producer, in one Kafka
        transaction: an attempt that fails (Kafka down past the timeout) is aborted, so its
        records, even if they reach the log later, are never read, and the retry's are the only
        ones (a flushed idempotent producer could deliver a timed-out record after the retry
        published it again: two final labels). Else sent and flushed."""
        if not self.producer.transactional:
            yield
            self.producer.flush()
            return
        with self._publish_lock:
            self.producer.begin()
            try:
                yield
                self.producer.commit([], None)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.producer.abort()
                raise

    def LeaseTask(
        self, request: human_tasks_pb2.LeaseTaskRequest, context: grpc.ServicerContext
    ) -> human_tasks_pb2.LeaseTaskResponse:
        annotator = access.annotator_id(access.current(), request.annotator_id)
        project = self.projects.get(request.project_id)
        lease = self.queue.lease(project.spec.project_id, annotator)
        if lease is None:
            return human_tasks_pb2.LeaseTaskResponse(has_task=False)
        expires = Timestamp()
        expires.FromNanoseconds(int(lease.expires_at * 1e9))
        return human_tasks_pb2.LeaseTaskResponse(
            has_task=True, task=lease.task, lease_id=lease.lease_id, lease_expires_at=expires
        )

    def _leased(self, lease_id: str, annotator_id: str) -> tuple[dict[str, str], str]:
        """The lease record of `lease_id` and the annotator the caller acts as for it
        (InvalidArgument for an empty or malformed id; the access errors of caller_for_lease)."""
        if not lease_id:
            raise InvalidArgument("lease_id", "is empty")
        check_lease_id(lease_id)
        info = self.queue.lease_info(lease_id)
        return info, caller_for_lease(info, annotator_id)

    def SubmitAnnotation(
        self, request: human_tasks_pb2.SubmitAnnotationRequest, context: grpc.ServicerContext
    ) -> human_tasks_pb2.SubmitAnnotationResponse:
        info, annotator = self._leased(request.lease_id, request.annotator_id)
        project = self.projects.get(info["project"])
        if is_multi_label(project):
            label = multi_label_answer(list(request.labels), project)
        else:
            if len(request.labels) != 1:
                raise InvalidArgument(
                    "labels", f"a single-label project takes exactly one label, got {len(request.labels)}"
                )
            label = request.labels[0]
            if label not in project.spec.labels:
                raise InvalidArgument(
                    "labels", f"{label!r} is not in project {project.spec.project_id!r}'s label set"
                )
        regions = self._checked_regions(request, info, project)
        answered = self.queue.answer(request.lease_id, annotator, label, regions)
        if answered.duplicate:
            lease = answered.lease or {}
            if lease.get("label") and lease.get("label") != label:
                log.info(
                    "lease %s answered again with a different label; the first answer stands",
                    request.lease_id,
                )
            if lease.get("produced") != "1" and self.queue.take_over(request.lease_id):
                self._redo(request.lease_id, self.queue.lease_info(request.lease_id))
            return human_tasks_pb2.SubmitAnnotationResponse(duplicate=True)
        info = {**info, "regions": regions}  # as the lease record now holds it (a redo reads it there)
        finalized = self._produce(request.lease_id, answered.task, annotator, label, answered.answers, info)
        return human_tasks_pb2.SubmitAnnotationResponse(finalized=finalized)

    def _checked_regions(
        self,
        request: human_tasks_pb2.SubmitAnnotationRequest,
        lease: dict[str, str],
        project: common_pb2.Project,
    ) -> str:
        """The answer's spans and boxes, checked against the leased item and the project's label
        set (InvalidArgument naming the field), in their stored form; "" when there are none."""
        if not request.spans and not request.boxes:
            return ""
        state = task_state(self.queue, lease["project"], lease["task"])
        if state is not None:  # else the task is finished: the answer is a duplicate or stale
            check_regions(request.spans, request.boxes, state[0].ingested.item, project.spec.labels)
        return encode_regions(request.spans, request.boxes)

    def _produce(
        self,
        lease_id: str,
        task: events_pb2.TaskRouted,
        annotator: str,
        label: str,
        answers: dict[str, str],
        lease: dict[str, str],
        redo: bool = False,
    ) -> bool:
        """Produce an answer's events while holding their production (queue.take_over): on a
        failure the hold is let go, so a retry or the upkeep produces them without waiting.
        `redo`: an earlier production of them failed, perhaps after its commit."""
        try:
            return self._after_answer(lease_id, task, annotator, label, answers, lease, redo)
        except BaseException:
            with contextlib.suppress(LabelloopError):
                self.queue.let_go(lease_id)
            raise

    def _after_answer(
        self,
        lease_id: str,
        task: events_pb2.TaskRouted,
        annotator: str,
        label: str,
        answers: dict[str, str],
        lease: dict[str, str],
        redo: bool = False,
    ) -> bool:
        project_id = task.ingested.item.project_id
        audit = task.reason == events_pb2.TASK_REASON_AUDIT
        review = task.reason == events_pb2.TASK_REASON_REVIEW
        leased_at = float(lease.get("leased_at", time.time()))
        project = self.projects.get(project_id)
        multi = is_multi_label(project)
        annotation = events_pb2.AnnotationSubmitted(
            task_id=task.task_id,
            item_id=task.ingested.item.item_id,
            project_id=project_id,
            annotator_id=annotator,
            labels=list(decode_labels(label)) if multi else [label],
            lease_id=lease_id,
            audit=audit,
            duration_ms=int((time.time() - leased_at) * 1000),
            annotated_at=now_timestamp(),
        )
        spans, boxes = decode_regions(lease.get("regions"))
        annotation.spans.extend(spans)
        annotation.boxes.extend(boxes)
        describe_routing(annotation, task, multi)
        if review:
            annotation.reviewed_labels.extend(task.review_of.labels)
            annotation.reviewed_annotators.extend(task.review_of.annotators)
        verdict = consensus(list(answers.values()), project) if answers else None
        final_labels = verdict_labels(verdict, multi)
        if verdict is not None and not verdict.tie:
            annotation.consensus_labels.extend(final_labels)
            annotation.consensus_no_label = multi and not final_labels
        finalized = False
        tie = False
        published: list[events_pb2.LabelFinalized] = []
        logged = redo and self._answer_logged(project_id, lease_id, leased_at)
        with self._publishing():
            if not logged:
                self.producer.send(ANNOTATIONS, item_key(project_id, task.ingested.item.item_id), annotation)
            if verdict is not None:
                if verdict.tie:
                    tie = True
                elif not audit and not review:
                    final = events_pb2.LabelFinalized(
                        ingested=task.ingested,
                        labels=final_labels,
                        source=common_pb2.LABEL_SOURCE_HUMAN,
                        confidence=verdict.agreement,
                        model_name=task.prediction.model_name,
                        model_version=task.prediction.model_version,
                        annotators=sorted(answers),
                        finalized_at=now_timestamp(),
                        answer_probability=task.answer_probability or 1.0,
                    )
                    spans, boxes = regions_for_label(
                        answers, self.queue.task_regions(project_id, member_of(task)), verdict.label or ""
                    )
                    final.spans.extend(spans)
                    final.boxes.extend(boxes)
                    published = [final]
                    if not self.writer.finalize(published, self.producer.send, over_people=True)[0].publish:
                        published = []  # already published (a retry), or another label came first
                    finalized = True
                else:
                    finalized = True
        metrics.ANNOTATIONS.labels(project_id).inc()
        self.queue.count_annotation(project_id)  # UNAVAILABLE, not INTERNAL, while Redis restarts
        if tie:
            self.queue.one_more(task)
        elif finalized:
            self.writer.confirm(published)
            self.queue.finish(task)
        self.queue.mark_produced(lease_id, project_id)
        if finalized and verdict is not None:
            self._count_agreement(task, answers, verdict.label or "")
            if self.label_model is not None and not review and not multi:
                self._learn(task, verdict.label or "")
        return finalized and not audit and not review

    def _answer_logged(self, project_id: str, lease_id: str, leased_at: float) -> bool:
        """Whether the answer's `annotations` record is already in the log: a production that
        failed after its commit (Redis lost between Kafka and the marks) left it there, and the
        redo then produces only the rest (the final label goes through the fence, which reads
        the labels topic the same way). False without a log to ask (tests of other paths)."""
        if self.answers_log is None:
            return False
        if lease_id not in self.answers_log.leases(project_id, [lease_id], int(leased_at * 1000)):
            return False
        log.info("lease %s: its annotation is already in the log; not produced again", lease_id)
        return True

    def _count_agreement(self, task: events_pb2.TaskRouted, answers: dict[str, str], verdict: str) -> None:
        """Add a completed task's agreement counters (once per task) and refresh the project's
        agreement gauges. Best effort: a failure is logged (the counters replay from Kafka)."""
        if self.agreement is None:
            return
        project_id = task.ingested.item.project_id
        updates = agreement_updates(answers, verdict, task.review_of.labels, task.review_of.annotators)
        try:
            if self.agreement.add(project_id, f"{member_of(task)}:{len(answers)}", updates):
                for row in self.agreement.read(project_id):
                    if row.answered:
                        metrics.ANNOTATOR_AGREEMENT.labels(project_id, row.annotator, "consensus").set(
                            row.agreed / row.answered
                        )
                    if row.reviewed:
                        metrics.ANNOTATOR_AGREEMENT.labels(project_id, row.annotator, "review").set(
                            row.upheld / row.reviewed
                        )
        except LabelloopError as exc:
            log.warning("agreement not counted for %s: %s", task.task_id, exc)

    def _learn(self, task: events_pb2.TaskRouted, human_label: str) -> None:
        """People decided `human_label` (a label or an audit): the label model learns how each
        source that voted on the item did. Best effort: a failure is logged, the answer stands."""
        assert self.label_model is not None
        try:
            labels = self.projects.get(task.ingested.item.project_id).spec.labels
            self.label_model.observe_prediction(task.prediction, human_label, labels)
        except LabelloopError as exc:
            log.warning("label model not updated for %s: %s", task.task_id, exc)

    def republish(self, lease_id: str) -> None:
        """Produce the events of an answered lease that were never marked produced (called by
        the upkeep for answers whose client did not retry). Idempotent: the final label goes
        through the fence."""
        self.queue.lease_info(lease_id)  # FailedPrecondition when the record expired
        if self.queue.take_over(lease_id):
            self._redo(lease_id, self.queue.lease_info(lease_id))

    def _redo(self, lease_id: str, lease: dict[str, str]) -> None:
        state = task_state(self.queue, lease["project"], lease["task"])
        if state is None:
            # the task was finalized by another answer's events
            self.queue.mark_produced(lease_id, lease["project"])
            return
        task, answers, required = state
        complete = answers if len(answers) >= required else {}
        self._produce(lease_id, task, lease["annotator"], lease["label"], complete, lease, redo=True)

    def ReleaseTask(
        self, request: human_tasks_pb2.ReleaseTaskRequest, context: grpc.ServicerContext
    ) -> human_tasks_pb2.ReleaseTaskResponse:
        _, annotator = self._leased(request.lease_id, request.annotator_id)
        self.queue.release(request.lease_id, annotator)
        return human_tasks_pb2.ReleaseTaskResponse()

    def GetTaskMedia(
        self, request: human_tasks_pb2.GetTaskMediaRequest, context: grpc.ServicerContext
    ) -> human_tasks_pb2.TaskMedia:
        lease, annotator = self._leased(request.lease_id, request.annotator_id)
        check_live_lease(lease, annotator)
        state = task_state(self.queue, lease["project"], lease["task"])
        if state is None or self.media is None:
            raise FailedPrecondition("the task is finished or this service has no media root")
        return read_task_media(self.media, state[0].ingested.item)

    def GetQueueStats(
        self, request: human_tasks_pb2.GetQueueStatsRequest, context: grpc.ServicerContext
    ) -> human_tasks_pb2.QueueStats:
        project = self.projects.get(request.project_id)
        self.queue.reap(project.spec.project_id)
        stats = read_stats(self.queue.client, QueueKeys(self.queue.prefix), project.spec.project_id)
        return human_tasks_pb2.QueueStats(
            project_id=project.spec.project_id,
            queued=stats.queued,
            leased=stats.leased,
            oldest_age_s=stats.oldest_age_s,
            annotations=stats.annotations,
        )


def multi_label_answer(labels: list[str], project: common_pb2.Project) -> str:
    """A multi-label answer as the queue stores it (consensus.encode_labels): any subset of the
    project's labels, none included; InvalidArgument names a label outside the set or repeated."""
    for label in labels:
        if label not in project.spec.labels:
            raise InvalidArgument(
                "labels", f"{label!r} is not in project {project.spec.project_id!r}'s label set"
            )
    if len(set(labels)) != len(labels):
        raise InvalidArgument("labels", "a label is given twice")
    return encode_labels(labels, list(project.spec.labels))


def consensus(answers: list[str], project: common_pb2.Project) -> Verdict:
    """The consensus of a task's stored answers: the majority label, or for a multi-label
    project the per-label majority (its labels encoded as the queue stores answers, so agreement
    with it is counted as exact agreement)."""
    if not is_multi_label(project):
        return majority(answers)
    labels = list(project.spec.labels)
    verdict = per_label_majority([decode_labels(a) for a in answers], labels)
    if verdict.labels is None:
        return Verdict(None, verdict.agreement, True)
    return Verdict(encode_labels(verdict.labels, labels), verdict.agreement, False)


def verdict_labels(verdict: Verdict | None, multi: bool) -> list[str]:
    """The final label list of a verdict (empty on a tie or without one)."""
    if verdict is None or verdict.tie:
        return []
    return list(decode_labels(verdict.label or "")) if multi else [verdict.label or ""]


def describe_routing(
    annotation: events_pb2.AnnotationSubmitted, task: events_pb2.TaskRouted, multi: bool = False
) -> None:
    """Copy into `annotation` what calibration needs of the routing that sent the task: why, with
    which probability, and the routing model's top label and probability (and, for a multi-label
    project, its probability for every label); for an audit, the auto-label it judges."""
    annotation.reason = task.reason
    annotation.answer_probability = task.answer_probability or 1.0
    annotation.model_version = task.prediction.model_version
    if task.prediction.scores:
        top = max(task.prediction.scores, key=lambda s: s.probability)
        annotation.predicted_label = top.label
        annotation.predicted_confidence = top.probability
        if multi:
            annotation.predicted_scores.extend(task.prediction.scores)
    if task.reason == events_pb2.TASK_REASON_AUDIT:
        # What the audit judges: routing's auto-label (a multi-label project's whole label list; a
        # single-label task routed before TaskRouted.audited_labels existed names only its top label).
        audited = list(task.audited_labels) or ([] if multi else [annotation.predicted_label])
        annotation.audited_labels.extend(x for x in audited if x)
