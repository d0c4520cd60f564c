"""The annotator API against the real human-tasks service: leases, expiry, idempotent submits,
stale and foreign leases, labels outside the set, k=3 majority and ties."""

from __future__ import annotations

import uuid

import grpc
import pytest
from running import RunningServices
from support import one_label_per_item, wait_until

from labelloop.v1 import common_pb2, human_tasks_pb2, ingest_pb2

LEASE_TTL_S = 6.0  # short, so the expiry test is quick; long enough for a stalled call


@pytest.fixture(scope="module")
def services(stack, tmp_path_factory):
    prefix = f"t-human-{uuid.uuid4().hex[:8]}"
    running = RunningServices(
        stack,
        tmp_path_factory.mktemp("human"),
        prefix,
        f"t:human:{uuid.uuid4().hex[:8]}",
        extra_env={"LABELLOOP_LEASE_TTL_S": str(LEASE_TTL_S), "LABELLOOP_REAP_INTERVAL_S": "0.2"},
    )
    running.start()
    yield running
    running.stop()


def new_project(services: RunningServices, n_items: int, annotators: int = 1, labels=("a", "b", "c")) -> str:
    """A project with no model (every item becomes a human task) and `n_items` items submitted."""
    project_id = f"h-{uuid.uuid4().hex[:8]}"
    services.create_project(
        project_id, list(labels), annotators_per_task=annotators, model_name=f"none-{project_id}"
    )
    items = [
        common_pb2.Item(item_id=f"i{i}", project_id=project_id, content=common_pb2.Content(text=f"item {i}"))
        for i in range(n_items)
    ]
    assert (
        services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30).accepted
        == n_items
    )
    stub = services.human_tasks()
    wait_until(
        lambda: (
            stub.GetQueueStats(human_tasks_pb2.GetQueueStatsRequest(project_id=project_id), timeout=5).queued
            >= n_items
        ),
        60,
        interval=0.2,
        message="tasks did not reach the queue",
    )
    return project_id


def lease(stub, project_id: str, who: str) -> human_tasks_pb2.LeaseTaskResponse:
    return stub.LeaseTask(
        human_tasks_pb2.LeaseTaskRequest(project_id=project_id, annotator_id=who), timeout=10
    )


def submit(stub, lease_id: str, who: str, label: str) -> human_tasks_pb2.SubmitAnnotationResponse:
    return stub.SubmitAnnotation(
        human_tasks_pb2.SubmitAnnotationRequest(lease_id=lease_id, annotator_id=who, labels=[label]),
        timeout=10,
    )


def wait_for_labels(services: RunningServices, project_id: str, count: int) -> dict:
    def enough():
        labels = one_label_per_item(services.stack.bootstrap_servers, services.topic_prefix, project_id)
        return labels if len(labels) >= count else None

    return wait_until(enough, 30, interval=0.3, message=f"fewer than {count} final labels")


def error_of(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_leases_give_the_task_once_and_expiry_requeues_it(services) -> None:
    project_id = new_project(services, 1)
    stub = services.human_tasks()
    first = lease(stub, project_id, "ann-1")
    assert first.has_task and first.task.ingested.item.item_id == "i0"
    assert not lease(stub, project_id, "ann-2").has_task, "a leased task is not handed out twice"
    again = wait_until(
        lambda: (r := lease(stub, project_id, "ann-2")).has_task and r, LEASE_TTL_S + 10, interval=0.2
    )
    assert again.task.task_id == first.task.task_id, "the expired lease put the task back"
    err = error_of(lambda: submit(stub, first.lease_id, "ann-1", "a"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "expired" in err.details()
    assert submit(stub, again.lease_id, "ann-2", "a").finalized


def test_submit_is_idempotent_and_checks_lease_and_label(services) -> None:
    project_id = new_project(services, 2)
    stub = services.human_tasks()
    got = lease(stub, project_id, "ann-1")
    err = error_of(lambda: submit(stub, got.lease_id, "ann-1", "zebra"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "zebra" in err.details()
    err = error_of(lambda: submit(stub, got.lease_id, "intruder", "a"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "another annotator" in err.details()
    err = error_of(lambda: submit(stub, "no-such-lease", "ann-1", "a"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "lease_id" in err.details()
    err = error_of(lambda: submit(stub, "0" * 32, "ann-1", "a"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "unknown lease" in err.details()

    assert submit(stub, got.lease_id, "ann-1", "b").finalized
    repeat = submit(stub, got.lease_id, "ann-1", "b")
    assert repeat.duplicate and not repeat.finalized

    other = lease(stub, project_id, "ann-1")
    stub.ReleaseTask(
        human_tasks_pb2.ReleaseTaskRequest(lease_id=other.lease_id, annotator_id="ann-1"), timeout=10
    )
    err = error_of(lambda: submit(stub, other.lease_id, "ann-1", "a"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, "a released lease is stale"

    labels = wait_for_labels(services, project_id, 1)
    assert len(labels) == 1, "one submit, one final label, however often it is repeated"
    (label,) = labels.values()
    assert (list(label.labels), list(label.annotators), label.source) == (
        ["b"],
        ["ann-1"],
        common_pb2.LABEL_SOURCE_HUMAN,
    )


def test_three_annotators_majority_and_a_tie_needs_one_more(services) -> None:
    project_id = new_project(services, 2, annotators=3)
    stub = services.human_tasks()

    def answer_all(who: str, answers: dict[str, str]) -> list[human_tasks_pb2.SubmitAnnotationResponse]:
        out = []
        for _ in range(2):
            got = lease(stub, project_id, who)
            if got.has_task:
                out.append(submit(stub, got.lease_id, who, answers[got.task.ingested.item.item_id]))
        return out

    # i0: a, a, b -> a (2/3). i1: a, b, c -> tie -> a fourth annotator says c -> c (2/4).
    answer_all("ann-1", {"i0": "a", "i1": "a"})
    answer_all("ann-2", {"i0": "a", "i1": "b"})
    third = answer_all("ann-3", {"i0": "b", "i1": "c"})
    assert sum(r.finalized for r in third) == 1, "i0 is decided by its third answer; i1 is a tie"
    fourth = lease(stub, project_id, "ann-4")
    assert fourth.has_task and fourth.task.ingested.item.item_id == "i1"
    assert not lease(stub, project_id, "ann-1").has_task, "an annotator never gets the same item twice"
    assert submit(stub, fourth.lease_id, "ann-4", "c").finalized

    labels = wait_for_labels(services, project_id, 2)
    assert list(labels["i0"].labels) == ["a"] and labels["i0"].confidence == pytest.approx(2 / 3)
    assert sorted(labels["i0"].annotators) == ["ann-1", "ann-2", "ann-3"]
    assert list(labels["i1"].labels) == ["c"] and labels["i1"].confidence == pytest.approx(0.5)
    assert sorted(labels["i1"].annotators) == ["ann-1", "ann-2", "ann-3", "ann-4"]


def test_queue_stats_and_unknown_projects(services) -> None:
    project_id = new_project(services, 3)
    stub = services.human_tasks()
    lease(stub, project_id, "ann-1")
    stats = stub.GetQueueStats(human_tasks_pb2.GetQueueStatsRequest(project_id=project_id), timeout=5)
    assert (stats.queued, stats.leased) == (2, 1)
    assert stats.oldest_age_s >= 0
    err = error_of(lambda: lease(stub, "no-such-project", "ann-1"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
