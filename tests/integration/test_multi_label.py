"""Multi-label projects end to end on the real stack: three annotators per task decide each label
by its own majority; then the whole loop: people label the first items, retraining trains a
one-vs-rest model, Triton serves it with per-label thresholds, and later items are auto-labeled
with label lists when every label is confident (the rest reach people with the uncertain labels
marked). Each item has exactly one raw record on the labels topic."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import uuid

import pytest
from running import PIPELINE, RunningServices
from support import one_label_per_item, wait_until

from labelloop.bench.annotator_client import AnnotatorClient
from labelloop.cli.model_commands import describe_threshold
from labelloop.core.label_log import label_records, replay
from labelloop.core.stream import ensure_topics
from labelloop.core.topics import ANNOTATIONS, MODELS
from labelloop.v1 import admin_pb2, common_pb2, events_pb2, ingest_pb2, models_pb2, models_pb2_grpc

LABELS = ["sports", "politics", "tech"]
VOCAB = {
    "sports": [
        "football",
        "goal",
        "match",
        "league",
        "striker",
        "coach",
        "stadium",
        "tennis",
        "final",
        "referee",
    ],
    "politics": [
        "election",
        "senate",
        "vote",
        "minister",
        "parliament",
        "policy",
        "campaign",
        "ballot",
        "party",
        "law",
    ],
    "tech": [
        "software",
        "chip",
        "computer",
        "network",
        "startup",
        "cloud",
        "robot",
        "algorithm",
        "server",
        "code",
    ],
}
FILLER = [
    "the",
    "a",
    "today",
    "report",
    "people",
    "city",
    "week",
    "said",
    "new",
    "after",
    "more",
    "year",
    "some",
]


def synthetic(n: int, seed: int) -> list[tuple[str, str, tuple[str, ...]]]:
    """(id, text, labels): each label on with probability 0.4, its words in the text; ids do not
    reveal the labels."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        on = tuple(label for label in LABELS if rng.random() < 0.4)
        words = [w for label in on for w in rng.sample(VOCAB[label], 3)] + rng.sample(FILLER, 5)
        rng.shuffle(words)
        out.append((f"doc-{seed}-{i:04d}", " ".join(words), on))
    return out


def submit(services: RunningServices, project_id: str, records) -> None:
    items = [
        common_pb2.Item(item_id=i, project_id=project_id, content=common_pb2.Content(text=t))
        for i, t, _ in records
    ]
    response = services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30)
    assert response.rejected == 0


def annotators(services: RunningServices, project_id: str, answers, stop: threading.Event):
    target = f"127.0.0.1:{services.grpc_ports['human_tasks']}"
    clients = [
        AnnotatorClient(target, project_id, name, answer, stop, token=services.token)
        for name, answer in answers.items()
    ]
    for client in clients:
        client.start()
    return clients


def one_record_each(services: RunningServices, project_id: str, ids: set[str]):
    records = label_records(services.stack.bootstrap_servers, services.topic_prefix, project_id)
    assert set(records) == ids
    assert all(len(r) == 1 for r in records.values()), {k: len(v) for k, v in records.items() if len(v) > 1}
    return {k: v[0] for k, v in records.items()}


@pytest.fixture
def services(stack, tmp_path, topic_prefix, redis_prefix):
    running = RunningServices(
        stack,
        tmp_path,
        topic_prefix,
        redis_prefix,
        extra_env={
            "LABELLOOP_FIRST_MODEL_LABELS": "80",
            "LABELLOOP_RETRAIN_EVERY_LABELS": "100000",
            "LABELLOOP_HOLDOUT_FRACTION": "0.25",
            "LABELLOOP_CALIBRATION_FOLDS": "3",
            "LABELLOOP_FAILURE_BACKOFF_SECONDS": "1",
        },
    )
    ensure_topics(stack.bootstrap_servers, topic_prefix)
    yield running
    running.stop()


def test_three_annotators_decide_each_label_by_its_own_majority(services):
    services.start(PIPELINE)
    project_id = f"ml-{uuid.uuid4().hex[:8]}"
    services.create_project(
        project_id, LABELS, task_type=common_pb2.TASK_TYPE_MULTI_LABEL, annotators_per_task=3
    )
    records = synthetic(8, seed=1)
    truth = {i: on for i, _, on in records}

    def toggle(labels: tuple[str, ...], label: str) -> tuple[str, ...]:
        return tuple(x for x in LABELS if (x in labels) != (x == label))

    # Scripted disagreement: annotator b flips "tech", c flips "sports"; on every other item both
    # also turn "politics" on, so there two of three outvote the first annotator.
    def scripted_answer(name: str, item: str) -> tuple[str, ...]:
        if name == "a":
            return truth[item]
        on = toggle(truth[item], "tech" if name == "b" else "sports")
        return (*on, "politics") if int(item[-1]) % 2 == 0 and "politics" not in on else on

    seen_marks: list[tuple[str, ...]] = []

    def client(name: str):
        def answer(task):
            seen_marks.append(tuple(task.uncertain_labels))
            return scripted_answer(name, task.ingested.item.item_id)

        return answer

    stop = threading.Event()
    clients = annotators(services, project_id, {n: client(n) for n in "abc"}, stop)
    try:
        submit(services, project_id, records)
        wait_until(
            lambda: (
                len(label_records(services.stack.bootstrap_servers, services.topic_prefix, project_id))
                == len(records)
            ),
            120,
            interval=0.5,
            message=lambda: f"final labels missing; human_tasks log: {services.log('human_tasks')[-2000:]}",
        )
    finally:
        stop.set()
        for c in clients:
            c.join(10)

    finals = one_record_each(services, project_id, set(truth))
    for item_id, label in finals.items():
        answers = [set(scripted_answer(n, item_id)) for n in "abc"]
        expected = [x for x in LABELS if sum(x in a for a in answers) >= 2]
        assert list(label.labels) == expected, item_id
        assert label.source == common_pb2.LABEL_SOURCE_HUMAN
        assert sorted(label.annotators) == ["a", "b", "c"]
        assert label.confidence == pytest.approx(sum(a == set(expected) for a in answers) / 3)
    # The CLI creates multi-label projects too, and lists them as such.
    env = {
        **services.processes["ingest"].env,
        "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
        "LABELLOOP_TOKEN": services.token,
        "COLUMNS": "250",  # rich's table: one line per project
    }
    cli = [sys.executable, "-m", "labelloop.cli.main", "project"]
    other = f"ml-cli-{uuid.uuid4().hex[:6]}"
    created = subprocess.run(
        [*cli, "create", other, "--labels", "x,y,z", "--multi-label"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert any(other in line and "multi-label" in line for line in listed.stdout.splitlines()), listed.stdout
    # No model yet: every task marks every label as uncertain.
    assert len(seen_marks) == 3 * len(records) and all(m == tuple(LABELS) for m in seen_marks)
    # The scripted answers make both kinds of outcome: a majority against annotator a, and an
    # agreed empty set or a split decided label by label.
    assert any(list(v.labels) != list(truth[k]) for k, v in finals.items())
    # Every answer is on `annotations`; one per task carries the consensus (empty: no_label).
    events = [
        a
        for a in replay(services.stack.bootstrap_servers, services.topic_prefix, ANNOTATIONS)
        if a.project_id == project_id
    ]
    assert len(events) == 3 * len(records)
    completing = [a for a in events if a.consensus_labels or a.consensus_no_label]
    assert sorted(a.item_id for a in completing) == sorted(truth)
    assert {a.item_id: list(a.consensus_labels) for a in completing} == {
        k: list(v.labels) for k, v in finals.items()
    }


def test_the_loop_trains_one_vs_rest_and_auto_labels_label_lists(services):
    services.start((*PIPELINE, "retraining"))
    project_id = f"ml-{uuid.uuid4().hex[:8]}"
    services.create_project(
        project_id, LABELS, task_type=common_pb2.TASK_TYPE_MULTI_LABEL, target_precision=0.9
    )
    first, later = synthetic(120, seed=2), synthetic(300, seed=3)
    truth = {i: on for i, _, on in first + later}
    marks: dict[str, tuple[str, ...]] = {}

    def perfect(task):
        marks[task.ingested.item.item_id] = tuple(task.uncertain_labels)
        return truth[task.ingested.item.item_id]

    stop = threading.Event()
    clients = annotators(services, project_id, {"p": perfect}, stop)
    bootstrap, prefix = services.stack.bootstrap_servers, services.topic_prefix
    try:
        submit(services, project_id, first)

        def promoted():
            return [
                e
                for e in replay(bootstrap, prefix, MODELS)
                if e.project_id == project_id and e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED
            ]

        events = wait_until(
            promoted,
            300,
            interval=1.0,
            message=lambda: f"no model promoted; retraining log: {services.log('retraining')[-3000:]}",
        )
        assert set(events[0].label_upper_thresholds) == set(LABELS)
        assert set(events[0].label_lower_thresholds) == set(LABELS)
        assert any(v <= 1.0 for v in events[0].label_upper_thresholds.values()), events[0]
        submit(services, project_id, later)
        wait_until(
            lambda: len(label_records(bootstrap, prefix, project_id)) == len(truth),
            180,
            interval=0.5,
            message=lambda: f"final labels missing; routing log: {services.log('routing')[-2000:]}",
        )
    finally:
        stop.set()
        for c in clients:
            c.join(10)

    finals = one_record_each(services, project_id, set(truth))
    auto = {k: v for k, v in finals.items() if v.source == common_pb2.LABEL_SOURCE_MODEL}
    human = {k: v for k, v in finals.items() if v.source == common_pb2.LABEL_SOURCE_HUMAN}
    assert len(auto) >= 30, f"only {len(auto)} of {len(later)} later items auto-labeled"
    assert any(len(v.labels) >= 2 for v in auto.values()), "auto-labels carry label lists"
    exact = sum(tuple(v.labels) == truth[k] for k, v in auto.items()) / len(auto)
    assert exact >= 0.9, f"exact-match precision of auto-labels {exact:.3f}"
    assert all(tuple(v.labels) == truth[k] for k, v in human.items())
    assert all(v.model_version >= 1 for v in auto.values())
    # Items people saw after the model served carry the uncertain labels only (never all when
    # some label was decided), in the project's order.
    later_ids = {i for i, _, _ in later}
    served_marks = [marks[k] for k in human if k in later_ids and k in marks]
    assert served_marks and all(list(m) == [x for x in LABELS if x in m] for m in served_marks)
    assert any(0 < len(m) < len(LABELS) for m in served_marks), served_marks[:20]
    # Every answer to a task a model routed carries that model's probability for every label (the
    # sample its pairs move on between trainings, core/answers.LabelSetAnswer), counted raw.
    routed = [
        a
        for a in replay(bootstrap, prefix, ANNOTATIONS)
        if a.project_id == project_id and a.model_version >= 1
    ]
    assert routed, "no answer to a model's task"
    assert all([s.label for s in a.predicted_scores] == LABELS for a in routed), routed[0]
    # The project's status shows the pairs in force (its global threshold means nothing here).
    status = services.admin().GetProjectStatus(
        admin_pb2.GetProjectStatusRequest(project_id=project_id), timeout=10
    )
    assert set(status.label_upper_thresholds) == set(LABELS) == set(status.label_lower_thresholds)
    assert any(v <= 1.0 for v in status.label_upper_thresholds.values()), status
    # So do the model listing (each version's calibrated pairs, and those in force) and the CLI.
    models = models_pb2_grpc.ModelServiceStub(services.channel("retraining"))
    listed = models.ListModels(models_pb2.ListModelsRequest(project_id=project_id), timeout=10)
    assert dict(listed.label_upper_thresholds) == pytest.approx(dict(status.label_upper_thresholds))
    promoted = [v for v in listed.versions if v.decision == "promoted" and v.family != "zero-shot"]
    assert promoted and all(set(v.label_upper_thresholds) == set(LABELS) for v in promoted)
    assert describe_threshold(2.0, listed.label_upper_thresholds, listed.label_lower_thresholds).startswith(
        "per-label pairs: "
    )
    # A person promoting a version is told the pairs it now serves with: that version's own.
    champion = next(v for v in listed.versions if "champion" in v.aliases)
    done = models.PromoteModel(
        models_pb2.PromoteModelRequest(project_id=project_id, version=champion.version), timeout=120
    )
    assert done.version == champion.version and done.triton_version > champion.triton_version
    assert dict(done.label_upper_thresholds) == pytest.approx(dict(champion.label_upper_thresholds))
    assert dict(done.label_lower_thresholds) == pytest.approx(dict(champion.label_lower_thresholds))


def test_triton_serves_both_multi_label_pipelines_with_independent_probabilities(stack, tmp_path):
    """The text pipeline and the numeric-vector one (yeast's items) load in Triton's python
    backend and answer what the fitted pipeline answers in process."""
    import numpy as np

    from labelloop.core import model_repository
    from labelloop.retraining.deploy import triton_predict
    from labelloop.retraining.multilabel import OvrFamily

    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 6))
    vectors = [" ".join(f"{v:.5f}" for v in row) for row in x]
    vector_labels = [[n for n, on in zip(LABELS, row[:3] > 0, strict=True) if on] for row in x]
    records = synthetic(150, seed=4)
    cases = {
        "text": (
            OvrFamily().fit([t for _, t, _ in records], [on for _, _, on in records], LABELS),
            [t for _, t, _ in records[:20]],
        ),
        "vector": (OvrFamily().fit(vectors, vector_labels, LABELS), vectors[:20]),
    }
    for kind, (model, sample) in cases.items():
        name = f"ml-{kind}-{uuid.uuid4().hex[:6]}"
        model.write_version(stack.model_repository, name, 1)
        assert model_repository.load_and_wait(stack.triton_grpc_url, name, timeout=120) == 1
        served = triton_predict(stack.triton_grpc_url, name, sample)
        assert served.shape == (20, 3)
        np.testing.assert_allclose(served, model.predict_proba(sample), atol=1e-5)
        assert not np.allclose(served.sum(axis=1), 1.0), f"{kind}: not a softmax"


@pytest.fixture
def default_services(stack, tmp_path, topic_prefix, redis_prefix):
    """The services with retraining's default trigger policy (as `make bench` runs them)."""
    running = RunningServices(stack, tmp_path, topic_prefix, redis_prefix)
    ensure_topics(stack.bootstrap_servers, topic_prefix)
    yield running
    running.stop()


def test_the_bench_runs_a_multi_label_dataset_and_reports_against_the_extended_reference(
    stack, default_services, tmp_path
):
    """`labelloop bench --data yeast` on the first items (all with LABELLOOP_TEST_YEAST_LIMIT=0;
    LABELLOOP_TEST_YEAST_REPORT keeps the report): the report's numbers agree with the raw
    topics, and the reference ran over its seeds."""
    import json
    import os
    from pathlib import Path

    from labelloop.bench.loop import BenchConfig, run_bench

    services = default_services
    services.start((*PIPELINE, "retraining"))
    limit = int(os.environ.get("LABELLOOP_TEST_YEAST_LIMIT", "200")) or None
    config = BenchConfig(
        data="yeast",
        limit=limit,
        report=Path(os.environ.get("LABELLOOP_TEST_YEAST_REPORT", tmp_path / "yeast.json")),
        ingest_addr=f"127.0.0.1:{services.grpc_ports['ingest']}",
        human_tasks_addr=f"127.0.0.1:{services.grpc_ports['human_tasks']}",
        kafka_bootstrap=stack.bootstrap_servers,
        topic_prefix=services.topic_prefix,
        manage_stack=False,
        token=services.token,
        stall_timeout_s=300,
        reference_seeds=2 if limit else 5,
        extra={"run": "yeast-multilabel"},
    )
    report = run_bench(config, say=lambda _line: None)
    assert json.loads(config.report.read_text()) == report
    n = report["items"]
    # raw records: one final label per item, not a last-wins view
    finals = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, report["project"])
    assert len(finals) == n == (limit or 2417)
    auto = sum(f.source == common_pb2.LABEL_SOURCE_MODEL for f in finals.values())
    assert report["auto_labels"] == auto
    assert report["human_fraction"] == pytest.approx(1 - auto / n)
    assert report["human_effort"] >= report["human_fraction"]
    for key in ("exact_match", "hamming_loss", "micro_f1"):
        assert 0.0 <= report[key] <= 1.0
    # perfect people: every human label is exactly right
    human_wrong = report["exact_match"] < 1.0 and auto == 0
    assert not human_wrong
    ref = report["reference"]
    assert len(ref["runs"]) == config.reference_seeds and 0 < ref["human_fraction"] <= 1
    # the first model at 50 human labels, then one every 25 (and 20% growth) as people label
    assert report["retrains"] >= 1, services.log("retraining")[-1500:]
