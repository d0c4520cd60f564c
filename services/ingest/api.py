"""The gRPC servicers hosted by the ingest process: IngestService (client apps) and the admin
ProjectService. Errors are raised as Labelloop errors; the core interceptor maps them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc
import redis

from labelloop.core import access
from labelloop.core.answers import AnswerLedger
from labelloop.core.errors import InvalidArgument
from labelloop.core.progress import Progress, ServingVersions
from labelloop.core.projects import ProjectStore, is_multi_label
from labelloop.core.queues import QueueKeys, read_stats
from labelloop.core.thresholds import ThresholdStore
from labelloop.ingest.ingestor import ACCEPTED, DUPLICATE, REJECTED, Ingestor
from labelloop.v1 import admin_pb2, admin_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)


def summarize(results: list[ingest_pb2.ItemResult]) -> ingest_pb2.SubmitBatchResponse:
    """Per-item results plus the three counts."""
    response = ingest_pb2.SubmitBatchResponse(results=results)
    response.accepted = sum(r.status == ACCEPTED for r in results)
    response.duplicates = sum(r.status == DUPLICATE for r in results)
    response.rejected = sum(r.status == REJECTED for r in results)
    return response


class IngestApi(ingest_pb2_grpc.IngestServiceServicer):
    """Submit, SubmitBatch, SubmitStream."""

    def __init__(self, ingestor: Ingestor, max_batch_items: int) -> None:
        self.ingestor = ingestor
        self.max_batch_items = max_batch_items

    def Submit(
        self, request: ingest_pb2.SubmitRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.SubmitResponse:
        (result,) = self.ingestor.submit([request.item], "grpc")
        if result.status == REJECTED:
            raise InvalidArgument(result.error_field, result.error_message.split(": ", 1)[-1])
        return ingest_pb2.SubmitResponse(item_id=result.item_id, status=result.status)

    def SubmitBatch(
        self, request: ingest_pb2.SubmitBatchRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.SubmitBatchResponse:
        if len(request.items) > self.max_batch_items:
            raise InvalidArgument(
                "items", f"{len(request.items)} items, over the limit of {self.max_batch_items}"
            )
        return summarize(self.ingestor.submit(list(request.items), "grpc"))

    def SubmitStream(
        self, request_iterator: Iterator[ingest_pb2.SubmitRequest], context: grpc.ServicerContext
    ) -> ingest_pb2.SubmitBatchResponse:
        results: list[ingest_pb2.ItemResult] = []
        chunk: list[common_pb2.Item] = []

        def flush() -> None:
            for result in self.ingestor.submit(chunk, "grpc-stream"):
                result.index += len(results)
                results.append(result)
            chunk.clear()

        for request in request_iterator:
            chunk.append(request.item)
            if len(chunk) >= 500:
                flush()
        if chunk:
            flush()
        return summarize(results)


class ProjectApi(admin_pb2_grpc.ProjectServiceServicer):
    """CreateProject, GetProject, ListProjects (the caller's projects), GetProjectStatus,
    ArchiveProject (the project's record: retraining retires its model, core/projects.py)."""

    def __init__(
        self,
        projects: ProjectStore,
        progress: Progress,
        client: redis.Redis,
        key_prefix: str,
        dead_letter_count: Callable[[], int],
    ) -> None:
        self.projects = projects
        self.progress = progress
        self.client = client
        self.queue_keys = QueueKeys(key_prefix)
        self.thresholds = ThresholdStore(client, key_prefix, cache_s=0)
        self.answers = AnswerLedger(client, key_prefix)
        self.serving = ServingVersions(client, key_prefix)
        self.dead_letter_count = dead_letter_count

    def CreateProject(
        self, request: admin_pb2.CreateProjectRequest, context: grpc.ServicerContext
    ) -> common_pb2.Project:
        return self.projects.create(request.spec)

    def GetProject(
        self, request: admin_pb2.GetProjectRequest, context: grpc.ServicerContext
    ) -> common_pb2.Project:
        return self.projects.get(request.project_id)

    def ArchiveProject(
        self, request: admin_pb2.ArchiveProjectRequest, context: grpc.ServicerContext
    ) -> common_pb2.Project:
        if not request.project_id:
            raise InvalidArgument("project_id", "is empty")
        project = self.projects.archive(request.project_id)
        log.info("%s: archived; ingest refuses its items", request.project_id)
        return project

    def ListProjects(
        self, request: admin_pb2.ListProjectsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListProjectsResponse:
        caller = access.current()
        visible = [p for p in self.projects.list() if caller.may_act_on(p.spec.project_id)]
        return admin_pb2.ListProjectsResponse(projects=visible)

    def GetProjectStatus(
        self, request: admin_pb2.GetProjectStatusRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ProjectStatus:
        project = self.projects.get(request.project_id)
        project_id = project.spec.project_id
        counts = self.progress.counts(project_id)
        queue = read_stats(self.client, self.queue_keys, project_id)
        threshold = self.thresholds.get(project_id)
        if is_multi_label(project):  # audits judged on exact match (core/answers.LabelSetAnswer)
            ml = self.answers.label_set_sample(project_id, threshold.model_version, project.spec.labels)
            agreeing, audits = ml.audits(threshold)
            audited = agreeing / audits if audits else 0.0
        else:
            sample = self.answers.sample(project_id, threshold.model_version)
            audits, audited = sample.audits, sample.audited_precision()  # noise-corrected (k >= 2)
        return admin_pb2.ProjectStatus(
            project_id=project_id,
            ingested=counts.ingested,
            auto_labeled=counts.auto_labeled,
            human_labeled=counts.human_labeled,
            waiting_for_people=queue.queued + queue.leased,
            dead_letters=self.dead_letter_count(),
            serving_version=self.serving.get(project_id),
            threshold=threshold.threshold,
            audits=audits,
            audited_precision=audited,
            target_precision=project.spec.target_precision,
            label_upper_thresholds=threshold.label_upper,
            label_lower_thresholds=threshold.label_lower,
        )
