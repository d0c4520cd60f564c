"""The app's gRPC clients (grpc.aio): human-tasks for the work, ingest for identity (TokenService)
and projects (ProjectService). Every call carries the logged-in person's own
`authorization: Bearer <token>`, so the services authorize the person, not the app.

Failures surface as `BackendError` carrying the service name and the gRPC status; the app maps
them to HTTP with `statuses.http_error`. TLS when `tls` names a CA (`LABELLOOP_GRPC_CA_FILE`). Channels are opened by `start()` inside the running
event loop and closed by `close()`, in reverse order.
"""

from __future__ import annotations

from typing import Any

import grpc

from labelloop.annotator_web.statuses import HttpError, http_error
from labelloop.core.grpc_client import ClientTls
from labelloop.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    human_tasks_pb2,
    human_tasks_pb2_grpc,
)


class BackendError(Exception):
    """A gRPC call failed; `http` is the response the page gets."""

    def __init__(self, service: str, code: grpc.StatusCode, details: str | None) -> None:
        super().__init__(f"{service}: {code.name}: {details}")
        self.code = code
        self.http: HttpError = http_error(code, details, service)


class Backend:
    """Calls human-tasks and ingest on behalf of one logged-in person at a time."""

    def __init__(
        self, human_tasks_addr: str, ingest_addr: str, timeout_s: float, tls: ClientTls | None = None
    ) -> None:
        self.human_tasks_addr = human_tasks_addr
        self.ingest_addr = ingest_addr
        self.timeout_s = timeout_s
        self.tls = tls
        self._channels: list[grpc.aio.Channel] = []
        self._labels: dict[str, tuple[str, ...]] = {}  # project -> label set (never changes)
        self._multi: dict[str, bool] = {}  # project -> multi-label (never changes)

    async def start(self) -> None:
        """Open the channels (inside the event loop that will use them)."""
        credentials = self.tls.credentials() if self.tls is not None else None
        if credentials is None:
            human = grpc.aio.insecure_channel(self.human_tasks_addr)
            ingest = grpc.aio.insecure_channel(self.ingest_addr)
        else:
            human = grpc.aio.secure_channel(self.human_tasks_addr, credentials)
            ingest = grpc.aio.secure_channel(self.ingest_addr, credentials)
        self._channels = [human, ingest]
        self.tasks = human_tasks_pb2_grpc.HumanTaskServiceStub(human)
        self.tokens = auth_pb2_grpc.TokenServiceStub(ingest)
        self.admin = admin_pb2_grpc.ProjectServiceStub(ingest)

    async def close(self) -> None:
        """Close the channels, last opened first."""
        for channel in reversed(self._channels):
            await channel.close()
        self._channels = []

    async def _call(self, service: str, method: Any, request: Any, token: str) -> Any:
        try:
            return await method(
                request, metadata=(("authorization", f"Bearer {token}"),), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise BackendError(service, exc.code(), exc.details()) from exc

    async def whoami(self, token: str) -> auth_pb2.TokenInfo:
        """The token's record (name, role, projects)."""
        return await self._call("ingest", self.tokens.WhoAmI, auth_pb2.WhoAmIRequest(), token)

    async def lease(self, token: str, project_id: str, annotator: str) -> human_tasks_pb2.LeaseTaskResponse:
        """Lease the next task of `project_id` for `annotator` (has_task False when none)."""
        request = human_tasks_pb2.LeaseTaskRequest(project_id=project_id, annotator_id=annotator)
        return await self._call("human-tasks", self.tasks.LeaseTask, request, token)

    async def submit(
        self, token: str, lease_id: str, annotator: str, label: str | list[str]
    ) -> human_tasks_pb2.SubmitAnnotationResponse:
        """Answer a leased task (idempotent per lease): one label, or a multi-label project's
        list of the labels that apply (possibly none)."""
        request = human_tasks_pb2.SubmitAnnotationRequest(
            lease_id=lease_id, annotator_id=annotator, labels=[label] if isinstance(label, str) else label
        )
        return await self._call("human-tasks", self.tasks.SubmitAnnotation, request, token)

    async def release(self, token: str, lease_id: str, annotator: str) -> None:
        """Give a leased task back to the queue."""
        request = human_tasks_pb2.ReleaseTaskRequest(lease_id=lease_id, annotator_id=annotator)
        await self._call("human-tasks", self.tasks.ReleaseTask, request, token)

    async def queue_stats(self, token: str, project_id: str) -> human_tasks_pb2.QueueStats:
        """Queue depth, leases, oldest age, answers so far."""
        request = human_tasks_pb2.GetQueueStatsRequest(project_id=project_id)
        return await self._call("human-tasks", self.tasks.GetQueueStats, request, token)

    async def project(self, token: str, project_id: str) -> common_pb2.Project:
        """A project's spec (labels, target precision...)."""
        request = admin_pb2.GetProjectRequest(project_id=project_id)
        return await self._call("ingest", self.admin.GetProject, request, token)

    async def projects(self, token: str) -> list[common_pb2.Project]:
        """Every project (admins)."""
        response = await self._call("ingest", self.admin.ListProjects, admin_pb2.ListProjectsRequest(), token)
        return list(response.projects)

    async def project_status(self, token: str, project_id: str) -> admin_pb2.ProjectStatus:
        """A project's counts, serving model and threshold."""
        request = admin_pb2.GetProjectStatusRequest(project_id=project_id)
        return await self._call("ingest", self.admin.GetProjectStatus, request, token)

    async def labels(self, token: str, project_id: str) -> tuple[str, ...]:
        """A project's label set, in order (cached: a project's labels never change)."""
        if project_id not in self._labels:
            project = await self.project(token, project_id)
            self._labels[project_id] = tuple(project.spec.labels)
            self._multi[project_id] = project.spec.task_type == common_pb2.TASK_TYPE_MULTI_LABEL
        return self._labels[project_id]

    async def is_multi_label(self, token: str, project_id: str) -> bool:
        """True for a multi-label project (cached with its labels: a task type never changes)."""
        await self.labels(token, project_id)
        return self._multi[project_id]
