"""Unit tests of the simulated annotator client's answer retries (labelloop.bench.annotator_client),
with a fake stub: an answer is sent again after UNAVAILABLE or DEADLINE_EXCEEDED, never after
another error, and not past `submit_retry_s`."""

from __future__ import annotations

import threading

import grpc
import pytest
from support import RpcFailure

from labelloop.bench.annotator_client import AnnotatorClient
from labelloop.v1 import events_pb2, human_tasks_pb2


class FakeStub:
    """Leases one task, then fails `failures` SubmitAnnotation calls with the given codes."""

    def __init__(self, failures: list[grpc.StatusCode]) -> None:
        self.failures = list(failures)
        self.submits: list[human_tasks_pb2.SubmitAnnotationRequest] = []

    def LeaseTask(self, request, timeout):
        task = events_pb2.TaskRouted(task_id="t1")
        task.ingested.item.item_id = "i1"
        return human_tasks_pb2.LeaseTaskResponse(has_task=True, lease_id="lease-1", task=task)

    def SubmitAnnotation(self, request, timeout):
        self.submits.append(request)
        if self.failures:
            raise RpcFailure(self.failures.pop(0))
        return human_tasks_pb2.SubmitAnnotationResponse(finalized=True)


def _client(retry_s: float = 5.0) -> AnnotatorClient:
    return AnnotatorClient(
        "unused:0", "p", "ann-1", lambda task: "a", threading.Event(), submit_retry_s=retry_s
    )


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_an_answer_is_sent_again_after_a_passing_outage(code: grpc.StatusCode) -> None:
    client = _client()
    stub = FakeStub([code, code])
    assert client.work_one(stub) is True
    assert [r.lease_id for r in stub.submits] == ["lease-1"] * 3, "the same answer, same lease"
    assert all(list(r.labels) == ["a"] for r in stub.submits)
    assert (client.stats.submitted, client.stats.finalized, client.stats.errors) == (1, 1, 2)


def test_another_error_drops_the_lease_without_a_retry() -> None:
    client = _client()
    stub = FakeStub([grpc.StatusCode.FAILED_PRECONDITION])
    assert client.work_one(stub) is False
    assert len(stub.submits) == 1
    assert (client.stats.submitted, client.stats.errors) == (0, 1), "each failed call counted once"


def test_retries_stop_after_submit_retry_s() -> None:
    client = _client(retry_s=0.5)
    stub = FakeStub([grpc.StatusCode.UNAVAILABLE] * 50)
    assert client.work_one(stub) is False
    # backoff from 0.2 s (jittered, doubling): a few calls in 0.5 s, not the 50 on offer; each
    # failure counted once
    assert 2 <= len(stub.submits) <= 6
    assert client.stats.submitted == 0 and client.stats.errors == len(stub.submits)
    assert len(stub.failures) == 50 - len(stub.submits)


def test_a_stop_ends_the_retries() -> None:
    client = _client(retry_s=60)
    client.stop_event.set()
    stub = FakeStub([grpc.StatusCode.UNAVAILABLE] * 50)
    assert client.work_one(stub) is False
    assert len(stub.submits) == 1
    assert client.stats.errors == 1, "each failed call counted once"
