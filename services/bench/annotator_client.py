"""A simulated annotator as a real client of the human-tasks gRPC API: lease, (wait), answer.

Used by `labelloop bench` and the end-to-end tests; `token` is its API token (an annotator's, or
an admin's acting for `annotator_id`). `answer` maps a leased task to the label to
submit (a list of labels for a multi-label project) (e.g. the hidden label, or `SimulatedAnnotator.answer(hidden)`); the loop runs until
`stop` is set, waiting `idle_wait_s` between polls of an empty queue.

An answer whose call fails because the service or its stores are briefly away (UNAVAILABLE,
DEADLINE_EXCEEDED) is sent again with backoff for up to `submit_retry_s`
(`grpc_client.call_with_retry`, on top of the channel's own few quick retries), as the web app does
(`annotator_web/static/api.js`): the service records a lease's answer once, so a retry of an
answer that did land changes nothing. Other errors drop the lease, as a person closing the page
would; the task comes back when the lease expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from labelloop.core import grpc_client
from labelloop.v1 import events_pb2, human_tasks_pb2, human_tasks_pb2_grpc

log = logging.getLogger(__name__)

#: The errors after which an answer is sent again (the service or its stores briefly away).
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass
class AnnotatorStats:
    """What one annotator client did."""

    leased: int = 0
    submitted: int = 0
    finalized: int = 0
    errors: int = 0


class AnnotatorClient(threading.Thread):
    """One annotator working a project's queue in a background thread."""

    def __init__(
        self,
        target: str,
        project_id: str,
        annotator_id: str,
        answer: Callable[[events_pb2.TaskRouted], str | Sequence[str]],
        stop: threading.Event,
        latency_ms: float = 0.0,
        idle_wait_s: float = 0.05,
        token: str = "",
        submit_retry_s: float = 60.0,
    ) -> None:
        super().__init__(name=f"annotator-{annotator_id}", daemon=True)
        self.target = target
        self.project_id = project_id
        self.annotator_id = annotator_id
        self.answer = answer
        self.stop_event = stop
        self.latency_s = latency_ms / 1000
        self.idle_wait_s = idle_wait_s
        self.stats = AnnotatorStats()
        self.token = token
        self.submit_retry_s = submit_retry_s

    def run(self) -> None:
        with grpc_client.channel(self.target, self.token) as channel:
            stub = human_tasks_pb2_grpc.HumanTaskServiceStub(channel)
            while not self.stop_event.is_set():
                if not self.work_one(stub):
                    self.stop_event.wait(self.idle_wait_s)

    def work_one(self, stub: human_tasks_pb2_grpc.HumanTaskServiceStub) -> bool:
        """Lease and answer one task; False when there was none (or the service was unreachable,
        or the answer failed)."""
        try:
            lease = stub.LeaseTask(
                human_tasks_pb2.LeaseTaskRequest(project_id=self.project_id, annotator_id=self.annotator_id),
                timeout=10,
            )
        except grpc.RpcError as exc:
            self.stats.errors += 1
            log.debug("annotator %s: %s", self.annotator_id, exc)
            return False
        if not lease.has_task:
            return False
        self.stats.leased += 1
        answer = self.answer(lease.task)
        labels = [answer] if isinstance(answer, str) else list(answer)
        if self.latency_s:
            self.stop_event.wait(self.latency_s)
        request = human_tasks_pb2.SubmitAnnotationRequest(
            lease_id=lease.lease_id, annotator_id=self.annotator_id, labels=labels
        )
        try:
            result = grpc_client.call_with_retry(
                lambda: self._submit_once(stub, request),
                give_up_s=self.submit_retry_s,
                first_backoff_s=0.2,
                max_backoff_s=2.0,
                retry_on=RETRYABLE,
                sleep=self._pause,
            )
        except (grpc.RpcError, _Stopped) as exc:
            log.debug("annotator %s: lease %s dropped: %r", self.annotator_id, lease.lease_id, exc)
            return False
        self.stats.submitted += 1
        self.stats.finalized += int(result.finalized)
        return True

    def _submit_once(
        self,
        stub: human_tasks_pb2_grpc.HumanTaskServiceStub,
        request: human_tasks_pb2.SubmitAnnotationRequest,
    ) -> human_tasks_pb2.SubmitAnnotationResponse:
        try:
            return stub.SubmitAnnotation(request, timeout=10)
        except grpc.RpcError:
            self.stats.errors += 1  # every failed call, retried or not
            raise

    def _pause(self, seconds: float) -> None:
        """The wait between two tries of an answer; ends the retries once `stop` is set."""
        if self.stop_event.wait(seconds):
            raise _Stopped


class _Stopped(Exception):
    """The annotator was stopped while an answer waited to be sent again."""
