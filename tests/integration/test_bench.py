"""`labelloop bench` on a small slice against the test stack: the report is complete and
consistent with the labels of record, and the reference is computed."""

from __future__ import annotations

import json

import pytest
from running import RunningServices
from support import one_label_per_item

from labelloop.bench.loop import BenchConfig, run_bench
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
    config = BenchConfig(
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
    labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, report["project"])
    assert set(labels) == set(truth)
    correct = sum(label.labels[0] == truth[i] for i, label in labels.items())
    assert report["accuracy"] == pytest.approx(correct / 200)
    humans = [i for i, label in labels.items() if label.source == common_pb2.LABEL_SOURCE_HUMAN]
    assert report["human_accuracy"] == pytest.approx(
        sum(labels[i].labels[0] == truth[i] for i in humans) / len(humans)
    )
    assert 0.75 < report["human_accuracy"] < 1.0, "simulated annotators err at about the configured 10%"

    reference = report["reference"]
    assert reference["items"] == 200
    assert 0 < reference["human_fraction"] <= 1
    assert reference["human_labeled"] + reference["auto_labeled"] == 200
