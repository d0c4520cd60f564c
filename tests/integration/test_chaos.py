"""`labelloop bench --chaos` on a small stream: every service SIGKILLed and restarted, Redis and
Kafka restarted, Triton and MLflow down for a while; no item is lost and none has two final-label
records (counted in the raw labels topic), and every fault recovers.

The faults act on the test stack's own processes (Kafka, Redis, Triton, MLflow) and on the
services this test starts. The stream is paced (4 items/s) and the bench holds its last items back
until the ninth fault was injected, so every fault lands while items are in flight.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from running import SERVICES, RunningServices
from support import one_label_per_item

from labelloop.bench.chaos import FAULTS
from labelloop.bench.loop import BenchConfig, BenchError, run_bench

ITEMS = 150


# A simulated annotator sends an answer again while the service is UNAVAILABLE (as the web app
# does), but a lease whose reply was lost, or an answer refused otherwise, is dropped, as a person
# closing the page would; the task comes back when the lease expires. Leases shorter than the
# stall timeout (180 s) let the stream finish (the default, 300 s, is for people).
LEASE_TTL_S = 60


@pytest.fixture
def services(stack, tmp_path, topic_prefix, redis_prefix):
    running = RunningServices(
        stack, tmp_path, topic_prefix, redis_prefix, extra_env={"LABELLOOP_LEASE_TTL_S": str(LEASE_TTL_S)}
    )
    running.start(SERVICES)
    yield running
    running.stop()


def test_chaos_loses_nothing_and_labels_each_item_once(stack, services, tmp_path) -> None:
    processes = [SimpleNamespace(name=name, process=p) for name, p in services.processes.items()]
    config = BenchConfig(
        data="bbcnews",
        limit=ITEMS,
        report=tmp_path / "chaos.json",
        rate=4.0,
        window=30,
        annotator_latency_ms=50,
        ingest_addr=f"127.0.0.1:{services.grpc_ports['ingest']}",
        human_tasks_addr=f"127.0.0.1:{services.grpc_ports['human_tasks']}",
        kafka_bootstrap=stack.bootstrap_servers,
        topic_prefix=services.topic_prefix,
        manage_stack=False,
        token=services.token,
        reference=False,
        stall_timeout_s=180,
        drain_timeout_s=10,
        chaos=True,
        chaos_outage_s=5,
        chaos_stack=SimpleNamespace(components=[*stack.infrastructure, *processes]),
    )
    try:
        report = run_bench(config, say=print)
    except BenchError:
        print(services.dump_stacks())  # where each service waits, in the failure report
        raise
    assert json.loads(config.report.read_text()) == report
    faults = {f["fault"]: f for f in report["faults"]}
    assert report["faults_not_injected"] == [], "the stream outlasts the faults"
    assert set(faults) == set(FAULTS)
    failed = {name: f["error"] for name, f in faults.items() if f["error"] or f["recovery_s"] is None}
    assert not failed, f"faults that did not recover: {failed}"
    assert (report["lost"], report["duplicates"]) == (0, 0), report["duplicated_items"]
    labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, report["project"])
    assert len(labels) == ITEMS, "counted again from the raw topic: one record per item"
