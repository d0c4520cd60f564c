"""`labelloop bench` on a small slice against the test stack: the report is complete and
consistent with the labels of record, the reference is computed, and a rule file's rules vote."""

from __future__ import annotations

import json
import re

import pytest
from running import RunningServices

from labelloop.bench.loop import BenchConfig, run_bench
from labelloop.core.label_log import latest_labels, replay
from labelloop.core.topics import PREDICTIONS
from labelloop.datasets import load
from labelloop.v1 import common_pb2

KEYS = {
    "dataset",
    "items",
    "classes",
    "human_labeled",
    "auto_labeled",
    "audit_tasks",
    "human_fraction",
    "accuracy",
    "auto_accuracy",
    "human_accuracy",
    "retrains",
    "promotions",
    "throughput_items_per_s",
    "auto_latency_ms",
    "wall_s",
    "reference",
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
        ingest_addr=f"127.0.0.1:{services.grpc_ports['ingest']}",
        human_tasks_addr=f"127.0.0.1:{services.grpc_ports['human_tasks']}",
        kafka_bootstrap=stack.bootstrap_servers,
        topic_prefix=services.topic_prefix,
        manage_stack=False,
        token=services.token,
        stall_timeout_s=120,
    )
    report = run_bench(config, say=lambda _line: None)
    assert json.loads(config.report.read_text()) == report
    assert set(report) >= KEYS, f"missing keys {KEYS - set(report)}"
    assert config.plot is not None and config.plot.stat().st_size > 10_000
    assert report["items"] == 200 and report["classes"] == 5
    assert report["human_labeled"] + report["auto_labeled"] == report["items"]
    assert report["human_fraction"] == pytest.approx(report["human_labeled"] / report["items"])

    truth = {r["id"]: r["label"] for r in load("bbcnews", 200)}
    labels = latest_labels(stack.bootstrap_servers, services.topic_prefix, report["project"])
    assert set(labels) == set(truth)
    correct = sum(label.labels[0] == truth[i] for i, label in labels.items())
    assert report["accuracy"] == pytest.approx(correct / 200)
    humans = [i for i, label in labels.items() if label.source == common_pb2.LABEL_SOURCE_HUMAN]
    assert report["human_accuracy"] == pytest.approx(
        sum(labels[i].labels[0] == truth[i] for i in humans) / len(humans)
    )
    assert 0.75 < report["human_accuracy"] < 1.0, "simulated annotators err at about the configured 10%"

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

    reference = report["reference"]
    assert reference["items"] == 200
    assert 0 < reference["human_fraction"] <= 1
    assert reference["human_labeled"] + reference["auto_labeled"] == 200
