"""Client retries (core/grpc_client.py): the service config really makes gRPC retry UNAVAILABLE
(checked against an in-process server), and `call_with_retry` outlasts a restart."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from support import RpcFailure

from labelloop.core import grpc_client
from labelloop.v1 import ingest_pb2, ingest_pb2_grpc


class Flaky(ingest_pb2_grpc.IngestServiceServicer):
    """Answers UNAVAILABLE to the first `failures` calls (as ingest does while Kafka is down)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def SubmitBatch(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "kafka unavailable: down")
        return ingest_pb2.SubmitBatchResponse(accepted=len(request.items))


@pytest.fixture
def flaky():
    servicer = Flaky(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_the_service_config_retries_unavailable(flaky) -> None:
    servicer, target = flaky
    with grpc_client.channel(target) as channel:
        response = ingest_pb2_grpc.IngestServiceStub(channel).SubmitBatch(
            ingest_pb2.SubmitBatchRequest(), timeout=10
        )
    assert response.accepted == 0 and servicer.calls == 3


def test_a_plain_channel_fails_on_the_first_unavailable(flaky) -> None:
    servicer, target = flaky
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as info:
        ingest_pb2_grpc.IngestServiceStub(channel).SubmitBatch(ingest_pb2.SubmitBatchRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and servicer.calls == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_call_with_retry_outlasts_a_restart_with_growing_backoff() -> None:
    clock, outcomes = Clock(), [RpcFailure(grpc.StatusCode.UNAVAILABLE)] * 6 + ["ok"]

    def call() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert grpc_client.call_with_retry(call, sleep=clock.sleep, clock=lambda: clock.now) == "ok"
    assert len(clock.slept) == 6 and max(clock.slept) <= 10.0
    assert clock.slept[-1] >= 4.0, "the backoff grows"


def test_call_with_retry_gives_up_and_never_retries_other_errors() -> None:
    clock = Clock()

    def down() -> None:
        raise RpcFailure(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(RpcFailure):
        grpc_client.call_with_retry(down, give_up_s=30, sleep=clock.sleep, clock=lambda: clock.now)
    assert 29 <= clock.now <= 30
    calls = []

    def invalid() -> None:
        calls.append(1)
        raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT)

    with pytest.raises(RpcFailure):
        grpc_client.call_with_retry(invalid, sleep=clock.sleep, clock=lambda: clock.now)
    assert calls == [1]
