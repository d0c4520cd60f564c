"""Faults mid-stream lose nothing: kill -9 of inference and then routing, a Triton outage,
corrupt messages, and rejected input (each with a status that names the bad field)."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest
from models import serve, train_tfidf
from running import PIPELINE, RunningServices
from support import one_label_per_item, wait_until

from labelloop.bench.annotator_client import AnnotatorClient
from labelloop.core.label_log import replay
from labelloop.core.progress import Progress
from labelloop.core.stream import EventProducer
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import DEAD_LETTERS, ITEMS
from labelloop.datasets import load
from labelloop.v1 import common_pb2, ingest_pb2

LABELS = ["business", "entertainment", "politics", "sports", "tech"]


@pytest.fixture(scope="module")
def news():
    records = load("bbcnews")
    return records[:240], records[600:1000]


@pytest.fixture(scope="module")
def news_model(news):
    _, training = news
    return train_tfidf([r["text"] for r in training], [r["label"] for r in training])


@pytest.fixture
def services(stack, tmp_path, topic_prefix, redis_prefix):
    running = RunningServices(
        stack, tmp_path, topic_prefix, redis_prefix, extra_env={"LABELLOOP_MAX_TEXT_BYTES": "20000"}
    )
    running.start()
    yield running
    running.stop()


def items(project_id: str, records) -> list[common_pb2.Item]:
    return [
        common_pb2.Item(item_id=r["id"], project_id=project_id, content=common_pb2.Content(text=r["text"]))
        for r in records
    ]


def submit(services: RunningServices, project_id: str, records) -> None:
    response = services.ingest().SubmitBatch(
        ingest_pb2.SubmitBatchRequest(items=items(project_id, records)), timeout=60
    )
    assert response.accepted == len(records), [r.error_message for r in response.results if r.error_message]


def labeled(services: RunningServices, project_id: str) -> int:
    counts = Progress(services.redis, services.redis_prefix).counts(project_id)
    return counts.auto_labeled + counts.human_labeled


def start_project(stack, services: RunningServices, model) -> str:
    project_id = f"news-{uuid.uuid4().hex[:8]}"
    services.create_project(project_id, LABELS, audit_rate=0.0)
    serve(stack, project_id, model, LABELS)
    ThresholdStore(services.redis, services.redis_prefix).set(project_id, Threshold(0.5))
    return project_id


def run_annotator(services: RunningServices, project_id: str, truth: dict[str, str]):
    stop = threading.Event()
    client = AnnotatorClient(
        f"127.0.0.1:{services.grpc_ports['human_tasks']}",
        project_id,
        "ann",
        lambda t: truth[t.ingested.item.item_id],
        stop,
        token=services.token,
    )
    client.start()
    return stop, client


def assert_exactly_once(services: RunningServices, project_id: str, expected_ids: set[str]) -> None:
    wait_until(
        lambda: labeled(services, project_id) >= len(expected_ids),
        180,
        interval=0.5,
        message="stream stalled",
    )
    # The fence counts an item when it claims it, before the transaction holding its label
    # commits: wait for the committed records (each read asserts no item has two).
    seen: dict[str, object] = {}

    def committed() -> bool:
        seen.clear()
        seen.update(one_label_per_item(services.stack.bootstrap_servers, services.topic_prefix, project_id))
        return set(seen) >= expected_ids

    wait_until(
        committed,
        60,
        interval=0.5,
        message=lambda: f"missing {len(expected_ids - set(seen))} committed labels",
    )
    assert set(seen) == expected_ids, f"extra {len(set(seen) - expected_ids)}"


def test_kill_minus_nine_of_inference_then_routing_loses_nothing(stack, services, news, news_model) -> None:
    stream, _ = news
    project_id = start_project(stack, services, news_model)
    truth = {r["id"]: r["label"] for r in stream}
    stop, annotator = run_annotator(services, project_id, truth)
    try:
        submit(services, project_id, stream[:80])
        wait_until(lambda: labeled(services, project_id) >= 10, 120, interval=0.2, message="nothing labeled")
        services.kill("inference")
        submit(services, project_id, stream[80:160])
        services.start(["inference"])
        wait_until(
            lambda: labeled(services, project_id) >= 100,
            120,
            interval=0.2,
            message="inference did not resume",
        )
        services.kill("routing")
        submit(services, project_id, stream[160:])
        services.start(["routing"])
        assert_exactly_once(services, project_id, set(truth))
    finally:
        stop.set()
        annotator.join(10)


def test_a_triton_outage_pauses_the_stream_and_it_completes_afterwards(
    stack, services, news, news_model
) -> None:
    stream, _ = news
    records = stream[:120]
    project_id = start_project(stack, services, news_model)
    truth = {r["id"]: r["label"] for r in records}
    stop, annotator = run_annotator(services, project_id, truth)
    try:
        submit(services, project_id, records[:40])
        wait_until(lambda: labeled(services, project_id) >= 40, 120, interval=0.2, message="nothing labeled")
        stack.triton.process.stop()
        try:
            submit(services, project_id, records[40:])
            wait_until(
                lambda: "triton unavailable" in services.log("inference"),
                60,
                interval=0.2,
                message="no pause logged",
            )
            assert labeled(services, project_id) == 40, "nothing is labeled while Triton is down"
        finally:
            stack.triton.process.start()  # loads every model in the repository again
        assert_exactly_once(services, project_id, set(truth))
        labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, project_id)
        models = {
            label.model_version for label in labels.values() if label.source == common_pb2.LABEL_SOURCE_MODEL
        }
        assert models == {1}, "after the outage the same model serves again"
    finally:
        stop.set()
        annotator.join(10)


def test_bad_input_is_rejected_naming_the_field_and_loses_nothing_else(
    stack, services, news, news_model
) -> None:
    stream, _ = news
    project_id = start_project(stack, services, news_model)
    image_project = f"img-{uuid.uuid4().hex[:8]}"
    services.create_project(image_project, ["cat", "dog"], modality=common_pb2.MODALITY_IMAGE)
    stub = services.ingest()

    def rejected(item: common_pb2.Item) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            stub.Submit(ingest_pb2.SubmitRequest(item=item), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return info.value

    ok = items(project_id, stream[:1])[0]
    unknown = common_pb2.Item(
        item_id="u1", project_id="no-such-project", content=common_pb2.Content(text="hi")
    )
    assert "item.project_id" in rejected(unknown).details()
    empty = common_pb2.Item(item_id="e1", project_id=project_id, content=common_pb2.Content(text="  "))
    assert "item.content.text" in rejected(empty).details()
    huge = common_pb2.Item(item_id="h1", project_id=project_id, content=common_pb2.Content(text="x" * 20_001))
    assert "item.content.text" in rejected(huge).details() and "limit" in rejected(huge).details()
    text_for_images = common_pb2.Item(
        item_id="m1", project_id=image_project, content=common_pb2.Content(text="a cat")
    )
    assert "item.content" in rejected(text_for_images).details()

    batch = [ok, empty, items(project_id, stream[1:2])[0]]
    response = stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(items=batch), timeout=10)
    assert [r.status for r in response.results] == [
        ingest_pb2.SUBMIT_STATUS_ACCEPTED,
        ingest_pb2.SUBMIT_STATUS_REJECTED,
        ingest_pb2.SUBMIT_STATUS_ACCEPTED,
    ]
    assert response.results[1].error_field == "item.content.text"
    again = stub.Submit(ingest_pb2.SubmitRequest(item=ok), timeout=10)
    assert again.status == ingest_pb2.SUBMIT_STATUS_DUPLICATE, "the same item id twice is one item"

    # A corrupt record put straight on the items topic goes to the dead-letter topic; the stream goes on.
    producer = EventProducer(stack.bootstrap_servers, services.topic_prefix, "test")
    producer.send(ITEMS, b"corrupt", b"\x08\x96\x01garbage\xff")
    producer.close()
    submit(services, project_id, stream[2:30])
    truth = {r["id"]: r["label"] for r in stream[:30]}
    stop, annotator = run_annotator(services, project_id, truth)
    try:
        assert_exactly_once(services, project_id, set(truth))
    finally:
        stop.set()
        annotator.join(10)
    letters = list(replay(stack.bootstrap_servers, services.topic_prefix, DEAD_LETTERS))
    assert [(d.key, d.service, d.error_type) for d in letters] == [(b"corrupt", "inference", "DecodeError")]
    assert letters[0].value == b"\x08\x96\x01garbage\xff"


def test_sigusr1_writes_every_threads_stack_to_the_log_and_the_service_runs_on(services) -> None:
    """`kill -USR1` (core/service.py) is how to see where a stuck service waits: every thread's
    stack goes to the service's log, and nothing else changes."""
    # Ready is not yet consuming: one CI run signalled routing while it still awaited its
    # partitions' metadata (stream.py), a stack without the loop's frames.
    wait_until(lambda: ": consuming " in services.log("routing"), 30, message="routing never consumed")
    mark = len(services.log("routing"))
    dumped = services.dump_stacks()
    for name in ("ingest", "inference", "routing"):
        section = dumped.split(f"--- {name}: stacks ---", 1)[1].split("--- ", 1)[0]
        assert "Thread 0x" in section, f"{name} wrote no stacks: {section[:500]}"
    # dump_stacks returns once a stack has begun; the threads are written one by one.
    wait_until(
        lambda: all(frame in services.log("routing")[mark:] for frame in ("stream.py", "run_once")),
        10,
        message="the consume loop's frames are not in routing's log after SIGUSR1",
    )
    for name in PIPELINE:
        wait_until(lambda n=name: services.processes[n].status().healthy, 20, message=f"{name} after SIGUSR1")
