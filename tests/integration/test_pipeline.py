"""End to end through the five-service pipeline (ingest, inference, routing, human tasks), each
service its own process, on real SpamAssassin e-mails: confident items are auto-labeled, the
rest reach people, a scripted annotator labels them over gRPC, and the export holds every item
exactly once with the right source. Crashes (kill -9) and a Triton outage lose nothing."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections import Counter

import pytest
from models import serve, train_tfidf
from running import RunningServices
from support import one_label_per_item, wait_until

from labelloop.bench.annotator_client import AnnotatorClient
from labelloop.core.label_log import latest_labels, replay
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import ANNOTATIONS
from labelloop.datasets import load
from labelloop.routing.decisions import audit_draw
from labelloop.v1 import admin_pb2, common_pb2, ingest_pb2

LABELS = ["ham", "spam"]
STREAM = 300


@pytest.fixture(scope="module")
def spam():
    records = load("spamassassin")
    stream, training = records[:STREAM], records[1000:1600]
    return stream, training


@pytest.fixture(scope="module")
def spam_model(spam):
    _, training = spam
    return train_tfidf([r["text"] for r in training], [r["label"] for r in training])


@pytest.fixture
def services(stack, tmp_path, topic_prefix, redis_prefix):
    running = RunningServices(stack, tmp_path, topic_prefix, redis_prefix)
    running.start()
    yield running
    running.stop()


def submit(services: RunningServices, project_id: str, records, batch: int = 100) -> None:
    stub = services.ingest()
    for start in range(0, len(records), batch):
        items = [
            common_pb2.Item(
                item_id=r["id"], project_id=project_id, content=common_pb2.Content(text=r["text"])
            )
            for r in records[start : start + batch]
        ]
        response = stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30)
        assert response.rejected == 0, [r.error_message for r in response.results if r.error_message]


def annotate(
    services: RunningServices, project_id: str, truth: dict[str, str], stop: threading.Event, n: int = 1
):
    target = f"127.0.0.1:{services.grpc_ports['human_tasks']}"
    clients = [
        AnnotatorClient(
            target,
            project_id,
            f"annotator-{i}",
            lambda task: truth[task.ingested.item.item_id],
            stop,
            token=services.token,
        )
        for i in range(n)
    ]
    for client in clients:
        client.start()
    return clients


def wait_for_labels(services: RunningServices, project_id: str, count: int, timeout: float = 180):
    def enough():
        labels = latest_labels(services.stack.bootstrap_servers, services.topic_prefix, project_id)
        return labels if len(labels) >= count else None

    return wait_until(
        enough,
        timeout,
        interval=0.5,
        message=lambda: (
            f"fewer than {count} final labels; inference log tail: {services.log('inference')[-2000:]}"
        ),
    )


def all_waiting(services: RunningServices, project_id: str, records, audit_rate: float):
    """A new project whose `records` all wait for people (no model yet); returns its queue size."""
    from labelloop.v1 import human_tasks_pb2

    services.create_project(project_id, LABELS, audit_rate=audit_rate)
    submit(services, project_id, records)
    stub = services.human_tasks()

    def queued() -> int:
        request = human_tasks_pb2.GetQueueStatsRequest(project_id=project_id)
        return stub.GetQueueStats(request, timeout=5).queued

    wait_until(lambda: queued() == len(records), 60, interval=0.3, message="tasks not queued")
    return queued


def deploy(stack, services: RunningServices, project_id: str, model) -> None:
    """Serve `model` as the project's version 1 at threshold 0.9 and announce its deploy, as the
    model lifecycle would: human-tasks sends the waiting tasks back for its opinion."""
    from labelloop.core import stream as core_stream
    from labelloop.core.topics import MODELS
    from labelloop.v1 import events_pb2

    assert serve(stack, project_id, model, LABELS) == 1
    ThresholdStore(services.redis, services.redis_prefix).set(project_id, Threshold(0.9, model_version=1))
    producer = core_stream.EventProducer(stack.bootstrap_servers, services.topic_prefix, "test")
    try:
        producer.send(
            MODELS,
            project_id,
            events_pb2.ModelEvent(
                project_id=project_id, kind=events_pb2.MODEL_EVENT_KIND_DEPLOYED, model_name=project_id
            ),
        )
        producer.flush()
    finally:
        producer.close()


def test_the_pipeline_labels_every_item_once_with_the_right_source(
    stack, services, spam, spam_model, tmp_path
):
    stream, _ = spam
    project_id = f"spam-{uuid.uuid4().hex[:8]}"
    services.create_project(project_id, LABELS, audit_rate=0.1)
    assert serve(stack, project_id, spam_model, LABELS) == 1
    ThresholdStore(services.redis, services.redis_prefix).set(project_id, Threshold(0.9, model_version=1))
    truth = {r["id"]: r["label"] for r in stream}

    submit(services, project_id, stream)
    stop = threading.Event()
    annotators = annotate(services, project_id, truth, stop)
    try:
        labels = wait_for_labels(services, project_id, STREAM)
        auto = [label for label in labels.values() if label.source == common_pb2.LABEL_SOURCE_MODEL]
        expected = {
            label.ingested.item.item_id
            for label in auto
            if audit_draw(label.ingested.item.item_id, "labelloop-audit") < 0.1
        }
        # Audit tasks are answered after the final labels exist: keep the annotator working.
        wait_until(
            lambda: (
                {
                    a.item_id
                    for a in replay(stack.bootstrap_servers, services.topic_prefix, ANNOTATIONS)
                    if a.audit
                }
                >= expected
            ),
            60,
            interval=0.5,
            message="audit annotations missing",
        )
    finally:
        stop.set()
        for a in annotators:
            a.join(10)

    labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, project_id)
    assert set(labels) == set(truth), "every ingested item has exactly one final label"
    sources = Counter(label.source for label in labels.values())
    human = [label for label in labels.values() if label.source == common_pb2.LABEL_SOURCE_HUMAN]
    assert auto and human, f"both paths are exercised: {sources}"
    assert all(label.confidence >= 0.9 and label.model_version == 1 for label in auto)
    assert all(list(label.annotators) == ["annotator-0"] for label in human)
    assert all(label.labels[0] == truth[label.ingested.item.item_id] for label in human)
    auto_accuracy = sum(label.labels[0] == truth[label.ingested.item.item_id] for label in auto) / len(auto)
    assert auto_accuracy >= 0.9, (
        f"auto-labels at threshold 0.9 should be mostly right, got {auto_accuracy:.3f}"
    )

    # Audit tasks: exactly the auto-labeled items whose stable draw falls under the audit rate.
    audits = {
        a.item_id for a in replay(stack.bootstrap_servers, services.topic_prefix, ANNOTATIONS) if a.audit
    }
    assert audits == expected and expected, (
        f"{len(audits)} audits, expected {len(expected)} of {len(auto)} auto labels"
    )

    # The CLI's export and status agree.
    env = {
        **services.processes["ingest"].env,
        "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
        "LABELLOOP_TOKEN": services.token,
    }
    out = tmp_path / "labels.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "labelloop.cli.main",
            "export",
            "--project",
            project_id,
            "--format",
            "csv",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    import pandas as pd

    frame = pd.read_csv(out)
    assert len(frame) == STREAM and frame["id"].astype(str).is_unique
    assert Counter(frame["source"]) == {"model": len(auto), "human": len(human)}
    status = subprocess.run(
        [sys.executable, "-m", "labelloop.cli.main", "status", "--project", project_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "ingested" in status.stdout and str(STREAM) in status.stdout


def test_a_deployed_model_takes_waiting_tasks_nobody_started_off_peoples_hands(
    stack, services, spam, spam_model
) -> None:
    from labelloop.v1 import human_tasks_pb2

    records = spam[0][:60]
    truth = {r["id"]: r["label"] for r in records}
    project_id = f"rescore-{uuid.uuid4().hex[:8]}"
    queued = all_waiting(services, project_id, records, audit_rate=0.0)
    stub = services.human_tasks()
    started = stub.LeaseTask(
        human_tasks_pb2.LeaseTaskRequest(project_id=project_id, annotator_id="busy"), timeout=10
    )
    assert started.has_task
    kept = started.task.ingested.item.item_id

    # A model is deployed: the waiting tasks are sent back for its opinion.
    deploy(stack, services, project_id, spam_model)

    def settled():
        # Every task left the queue as an auto-label, or is still queued (the leased one aside);
        # a withdrawal leaves the queue a moment before its label is readable, so wait for both.
        before = queued()
        labels = latest_labels(stack.bootstrap_servers, services.topic_prefix, project_id)
        done = len(labels) >= 20 and before + len(labels) == len(records) - 1 and queued() == before
        return labels if done else None

    auto = wait_until(settled, 90, interval=0.5, message="waiting tasks were not auto-labeled")
    assert kept not in auto, "a task someone leased stays with people"
    assert all(
        label.source == common_pb2.LABEL_SOURCE_MODEL and label.model_version == 1 and label.confidence >= 0.9
        for label in auto.values()
    )

    # People label the rest, the started task included (given back): one final label per item.
    stub.ReleaseTask(
        human_tasks_pb2.ReleaseTaskRequest(lease_id=started.lease_id, annotator_id="busy"), timeout=10
    )
    stop = threading.Event()
    annotators = annotate(services, project_id, truth, stop)
    try:
        labels = wait_for_labels(services, project_id, len(records))
    finally:
        stop.set()
        for a in annotators:
            a.join(10)
    labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, project_id)
    assert set(labels) == set(truth)
    assert labels[kept].source == common_pb2.LABEL_SOURCE_HUMAN
    humans = {i for i, label in labels.items() if label.source == common_pb2.LABEL_SOURCE_HUMAN}
    assert humans.isdisjoint(auto), "no item is labeled by both the model and people"
    status = services.admin().GetProjectStatus(
        admin_pb2.GetProjectStatusRequest(project_id=project_id), timeout=10
    )
    # (counted from the final labels: a rescore still under way when `settled` held may have
    # auto-labeled more waiting tasks after it)
    assert auto.keys() <= labels.keys() - humans
    assert (status.auto_labeled, status.human_labeled) == (len(records) - len(humans), len(humans))


def test_a_withdrawn_auto_label_is_audited_under_routings_draw(stack, services, spam, spam_model) -> None:
    """Waiting tasks a new model auto-labels are audited as new items would be: exactly the
    withdrawn items whose stable draw falls under the audit rate get an audit task (on the raw
    `tasks` topic), their final labels say `audited`, and people's audit answers reach
    `annotations` with the audit's known probability. Before, withdrawn labels were never audited."""
    from labelloop.core.topics import TASKS
    from labelloop.v1 import events_pb2

    records = spam[0][60:120]
    truth = {r["id"]: r["label"] for r in records}
    project_id = f"rescore-audit-{uuid.uuid4().hex[:8]}"
    all_waiting(services, project_id, records, audit_rate=0.5)
    deploy(stack, services, project_id, spam_model)

    def withdrawn():
        labels = latest_labels(stack.bootstrap_servers, services.topic_prefix, project_id)
        return labels if len(labels) >= 20 else None

    wait_until(withdrawn, 90, interval=0.5, message="waiting tasks were not auto-labeled")
    stop = threading.Event()
    annotators = annotate(services, project_id, truth, stop)
    try:
        wait_for_labels(services, project_id, len(records))
        labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, project_id)
        auto = {i: label for i, label in labels.items() if label.source == common_pb2.LABEL_SOURCE_MODEL}
        expected = {i for i in auto if audit_draw(i, "labelloop-audit") < 0.5}
        assert auto and expected and expected != set(auto), "both sides of the draw are exercised"

        def audit_answers() -> set[str]:
            return {
                a.item_id
                for a in replay(
                    stack.bootstrap_servers, services.topic_prefix, ANNOTATIONS, project_id=project_id
                )
                if a.audit and a.project_id == project_id
            }

        wait_until(lambda: audit_answers() >= expected, 60, interval=0.5, message="audit answers missing")
    finally:
        stop.set()
        for a in annotators:
            a.join(10)

    assert {i for i, label in auto.items() if label.audited} == expected
    audit_tasks = [
        t
        for t in replay(stack.bootstrap_servers, services.topic_prefix, TASKS, project_id=project_id)
        if t.ingested.item.project_id == project_id and t.reason == events_pb2.TASK_REASON_AUDIT
    ]
    assert {t.ingested.item.item_id for t in audit_tasks} == expected
    assert all(t.task_id.endswith(":audit") and t.HasField("enqueue") for t in audit_tasks)
    answers = [
        a
        for a in replay(stack.bootstrap_servers, services.topic_prefix, ANNOTATIONS, project_id=project_id)
        if a.audit and a.project_id == project_id
    ]
    assert {a.item_id for a in answers} == expected
    assert all(a.answer_probability == 0.5 and a.model_version == 1 for a in answers)
