"""`labelloop bench` on a small slice against the test stack: the report is complete and
consistent with the raw `labels` and `annotations` topics, the window holds, the reference is
computed over its seeds, and a rule file's rules vote."""

from __future__ import annotations

import json
import re

import pytest
from running import SERVICES, RunningServices
from support import one_label_per_item

from labelloop.bench.loop import BenchConfig, run_bench
from labelloop.core.label_log import replay
from labelloop.core.topics import ANNOTATIONS, MODELS, PREDICTIONS, TASKS
from labelloop.datasets import load
from labelloop.v1 import common_pb2, events_pb2

KEYS = {
    "dataset",
    "items",
    "classes",
    "human_labeled",
    "auto_labeled",
    "audit_tasks",
    "annotations",
    "human_fraction",
    "human_effort",
    "max_without_final_label",
    "accuracy",
    "auto_accuracy",
    "human_accuracy",
    "retrains",
    "promotions",
    "throughput_items_per_s",
    "auto_latency_ms",
    "wall_s",
    "reference",
    "label_issues",
}


@pytest.fixture
def services(stack, tmp_path, topic_prefix, redis_prefix):
    running = RunningServices(stack, tmp_path, topic_prefix, redis_prefix)
    running.start()
    yield running
    running.stop()


def test_the_bench_report_is_complete_and_consistent(stack, services, tmp_path) -> None:
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text("rules:\n  - {name: football, label: sports, keywords: [football]}\n")
    config = BenchConfig(
        rules=rule_file,
        data="bbcnews",
        limit=200,
        report=tmp_path / "report.json",
        plot=tmp_path / "report.png",
        annotator_error=0.1,
        annotators=3,
        annotator_latency_ms=50,  # 600-odd answers; the window and the counts do not depend on it
        window=30,
        ingest_addr=f"127.0.0.1:{services.grpc_ports['ingest']}",
        human_tasks_addr=f"127.0.0.1:{services.grpc_ports['human_tasks']}",
        kafka_bootstrap=stack.bootstrap_servers,
        topic_prefix=services.topic_prefix,
        manage_stack=False,
        token=services.token,
        stall_timeout_s=120,
        reference_cache=tmp_path / "reference-cache",
    )
    report = run_bench(config, say=lambda _line: None)
    assert json.loads(config.report.read_text()) == report
    assert set(report) >= KEYS, f"missing keys {KEYS - set(report)}"
    assert config.plot is not None and config.plot.stat().st_size > 10_000
    assert report["items"] == 200 and report["classes"] == 5
    assert report["human_labeled"] + report["auto_labeled"] == report["items"]
    assert report["human_fraction"] == pytest.approx(report["human_labeled"] / report["items"])

    truth = {r["id"]: r["label"] for r in load("bbcnews", 200)}
    labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, report["project"])
    assert set(labels) == set(truth)
    correct = sum(label.labels[0] == truth[i] for i, label in labels.items())
    assert report["accuracy"] == pytest.approx(correct / 200)
    humans = [i for i, label in labels.items() if label.source == common_pb2.LABEL_SOURCE_HUMAN]
    assert report["human_accuracy"] == pytest.approx(
        sum(labels[i].labels[0] == truth[i] for i in humans) / len(humans)
    )
    assert report["human_accuracy"] >= 0.95, "a majority of three is right far more often than one person"

    # Every answer counts: k = 3 annotators per human task (plus tie-breakers), and audits.
    answers = [
        a
        for a in replay(stack.bootstrap_servers, services.topic_prefix, ANNOTATIONS)
        if a.project_id == report["project"]
    ]
    leases = {a.lease_id for a in answers}
    assert report["annotations"] == len(leases)
    assert report["audit_tasks"] == len({a.lease_id for a in answers if a.audit})
    assert report["human_effort"] == pytest.approx(len(leases) / 200)
    assert report["annotations"] >= 3 * report["human_labeled"], "k = 3: three answers per human label"
    assert report["human_effort"] >= 3 * report["human_fraction"]
    wrong = sum(a.labels[0] != truth[a.item_id] for a in answers)
    assert 0.03 < wrong / len(answers) < 0.2, "simulated annotators err at about the configured 10%"

    # The window: at no submit were more than 30 items submitted and not finalized (labels'
    # own timestamps), and the very first call filled it.
    assert report["max_without_final_label"] == 30
    assert sum(w["human_effort"] * (w["end"] - w["start"]) for w in report["windows"]) == pytest.approx(
        report["annotations"]
    )

    # the rule file's rule voted on the items that mention football, on their predictions
    predictions = list(
        replay(stack.bootstrap_servers, services.topic_prefix, PREDICTIONS, project_id=report["project"])
    )
    voted = {
        p.ingested.item.item_id for p in predictions if any(v.source == "rule:football" for v in p.votes)
    }
    mentions = {r["id"] for r in load("bbcnews", 200) if re.search(r"(?<!\w)football(?!\w)", r["text"], re.I)}
    assert voted == mentions and mentions
    sports = sum(truth[i] == "sports" for i in mentions)
    assert report["sources"]["rule:football"] == {
        "votes": len(mentions),
        "coverage": len(mentions) / 200,
        "accuracy": round(sports / len(mentions), 6),
    }

    # The label checks before training: the flagged labels are the review tasks on `tasks`,
    # scored against the hidden labels; reviews are answers (counted in human_effort above).
    reviews = {
        t.ingested.item.item_id: t.review_of.labels[0]
        for t in replay(stack.bootstrap_servers, services.topic_prefix, TASKS, project_id=report["project"])
        if t.reason == events_pb2.TASK_REASON_REVIEW
    }
    issues = report["label_issues"]
    assert issues["found"] == len(reviews)
    assert issues["truly_wrong"] == sum(label != truth[i] for i, label in reviews.items())
    assert 0 <= issues["caught"] <= min(issues["found"], issues["wrong_in_training"])
    reviewed = {a.item_id for a in answers if a.reason == events_pb2.TASK_REASON_REVIEW}
    assert reviewed <= set(reviews), "every review answer is to a review task"

    reference = report["reference"]
    assert reference["items"] == 200 and reference["seeds"] == [0, 1, 2, 3, 4]
    runs = reference["runs"]
    assert reference["human_fraction"] == pytest.approx(sum(r["human_fraction"] for r in runs) / 5)
    low, high = reference["range"]["human_fraction"]
    assert low == min(r["human_fraction"] for r in runs) and high == max(r["human_fraction"] for r in runs)
    assert 0 < low <= reference["human_fraction"] <= high <= 1
    assert all(r["human_labeled"] + r["auto_labeled"] == 200 for r in runs)
    assert not any(r.get("cached") for r in runs)
    assert len(list((tmp_path / "reference-cache").glob("*.json"))) == 5, "each seed kept for the next run"


@pytest.fixture
def learning_services(stack, tmp_path, topic_prefix, redis_prefix):
    """The pipeline and retraining, with label checks from 5 labels per class (a tiny stream)."""
    running = RunningServices(
        stack, tmp_path, topic_prefix, redis_prefix, extra_env={"LABELLOOP_LABEL_CHECK_MIN_PER_CLASS": "5"}
    )
    running.start(SERVICES)
    yield running
    running.stop()


def test_the_bench_reports_the_label_checks_findings_against_the_hidden_labels(
    stack, learning_services, tmp_path
) -> None:
    services = learning_services
    config = BenchConfig(
        data="bbcnews",
        limit=300,
        report=tmp_path / "report.json",
        plot=None,
        annotator_error=0.15,
        ingest_addr=f"127.0.0.1:{services.grpc_ports['ingest']}",
        human_tasks_addr=f"127.0.0.1:{services.grpc_ports['human_tasks']}",
        kafka_bootstrap=stack.bootstrap_servers,
        topic_prefix=services.topic_prefix,
        manage_stack=False,
        token=services.token,
        stall_timeout_s=180,
        reference=False,
    )
    report = run_bench(config, say=lambda _line: None)
    truth = {r["id"]: r["label"] for r in load("bbcnews", 300)}
    project = report["project"]
    issues = report["label_issues"]
    reviews_routed = [
        t
        for t in replay(stack.bootstrap_servers, services.topic_prefix, TASKS, project_id=project)
        if t.reason == events_pb2.TASK_REASON_REVIEW
    ]
    flagged_items = [t.ingested.item.item_id for t in reviews_routed]
    assert len(set(flagged_items)) == len(flagged_items), "each flagged item is sent for review once"
    # The report reads the checks up to the end of the last training it saw; a training still
    # running when the stream ended may flag more after it (counted there, not here).
    tasks = [t for t in reviews_routed if t.routed_at.ToMilliseconds() <= issues["trained_until_ms"]]
    flagged = {t.ingested.item.item_id: t.review_of.labels[0] for t in tasks}
    assert report["retrains"] >= 1 and issues["found"] == len(flagged) > 0, issues
    assert issues["truly_wrong"] == sum(label != truth[i] for i, label in flagged.items())
    assert issues["precision"] == pytest.approx(issues["truly_wrong"] / issues["found"], abs=1e-6)
    assert issues["wrong_in_training"] > 0 and 0 <= issues["caught"] <= issues["truly_wrong"]

    # Reviews are people's answers: by someone other than the label's annotator, counted in
    # human_effort, and never a second final label.
    answers = list(replay(stack.bootstrap_servers, services.topic_prefix, ANNOTATIONS, project_id=project))
    reviews = [a for a in answers if a.reason == events_pb2.TASK_REASON_REVIEW]
    assert all(a.annotator_id not in a.reviewed_annotators for a in reviews)
    assert report["annotations"] == len({a.lease_id for a in answers})
    finals = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, project)
    assert set(finals) == set(truth)

    # Each version that served is named with the family its promotion announced, and the
    # auto-labels counted per version and per family are the raw topic's, right as often.
    promoted = {
        e.model_version: e.family
        for e in replay(stack.bootstrap_servers, services.topic_prefix, MODELS)
        if e.project_id == project and e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED
    }
    served = report["served_versions"]
    assert promoted and {int(v): row["family"] for v, row in served.items()} == promoted
    auto = [f for f in finals.values() if f.source == common_pb2.LABEL_SOURCE_MODEL]
    for version, row in served.items():
        mine = [f for f in auto if f.model_version == int(version)]
        assert row["auto"] == len(mine)
        if mine:
            right = sum(f.labels[0] == truth[f.ingested.item.item_id] for f in mine)
            assert row["auto_accuracy"] == pytest.approx(right / len(mine), abs=1e-6)
    assert (
        sum(row["auto"] for row in report["auto_by_family"].values()) == len(auto) == report["auto_labeled"]
    )
