"""`labelloop bench --throughput`: the auto path at full speed, with an already-trained model and
a threshold that accepts everything, compared with standalone Triton on the same model.

1. items/s end to end: every item submitted as fast as the ingest API takes it; seconds from the
   first submit to the last final label (timestamps of the labels of record);
2. `auto_latency_ms` p50/p99 (ingest to final auto label) at a fixed rate of half that maximum;
3. `triton_items_per_s`: the same texts sent straight to Triton with the inference service's
   batch size and concurrency, and the ratio of (1) to it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from labelloop.bench import report as reports
from labelloop.bench.cold_start import PRIOR_WAIT_S, prior_wait_default, wait_for_prior
from labelloop.bench.loop import BenchConfig, BenchError, Say, api_token, ensure_stack
from labelloop.core import grpc_client, model_repository, redis_store
from labelloop.core.label_log import replay
from labelloop.core.progress import Progress
from labelloop.core.settings import CommonSettings, load
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import LABELS
from labelloop.datasets import labels_of
from labelloop.datasets import load as load_dataset
from labelloop.v1 import admin_pb2, admin_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

SUBMIT_BATCH = 500
TRITON_BATCH = 64  # the inference service's default LABELLOOP_MAX_BATCH_SIZE


def run_throughput(config: BenchConfig, say: Say = print) -> dict[str, Any]:
    """Measure and write the throughput report (see module doc)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from labelloop.stack import LocalStack, StackSettings

    started = time.perf_counter()
    records = load_dataset(config.data, config.limit or 5000)
    if any("media" in r for r in records):
        raise BenchError(
            f"{config.data}: --throughput measures the text path; image serving is measured by tests"
        )
    label_set = labels_of(records)
    texts = [r["text"] for r in records]
    ensure_stack(say)
    stack = LocalStack(load(StackSettings), say=None)
    common = load(CommonSettings)
    project_id = f"bench-tp-{uuid.uuid4().hex[:6]}"
    say(f"training a TF-IDF model on {len(records)} items of {config.data} for project {project_id}")
    pipeline = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(C=10, max_iter=500))
    pipeline.fit(texts, [r["label"] for r in records])
    with grpc_client.channel(config.ingest_addr, api_token(config)) as channel:
        admin_pb2_grpc.ProjectServiceStub(channel).CreateProject(
            admin_pb2.CreateProjectRequest(
                spec=common_pb2.ProjectSpec(project_id=project_id, labels=label_set, audit_rate=0.0)
            ),
            timeout=30,
        )
        if prior_wait_default() > 0:
            # Retraining serves a new text project the zero-shot prior (admitting nothing). Let
            # it land first, then serve this model as the newer version with its threshold at 0:
            # pinned before it, they were replaced by the prior and nothing was auto-labeled.
            wait_for_prior(admin_pb2_grpc.ProjectServiceStub(channel), project_id, PRIOR_WAIT_S, say)
        version = model_repository.next_version(stack.model_repository, project_id)
        model_repository.write_sklearn_version(
            stack.model_repository, project_id, version, pipeline, label_set
        )
        served = model_repository.load_and_wait(common.triton_grpc_url, project_id)
        client = redis_store.connect(common.redis_url, password=common.redis_secret())
        ThresholdStore(client, common.redis_key_prefix).set(project_id, Threshold(0.0, model_version=served))
        progress = Progress(client, common.redis_key_prefix)

        say(f"phase 1: {len(records)} items as fast as ingest takes them")
        first_ms = _submit(channel, project_id, records, "max", rate=None)
        finals = _wait_final(config, progress, project_id, "max", len(records), 0)
        last_ms = max(f.finalized_ms for f in finals.values())
        max_rate = len(records) / max((last_ms - first_ms) / 1000, 1e-9)
        say(f"  {max_rate:.0f} items/s end to end")

        half = max_rate / 2
        n_half = min(len(records), max(200, int(half * 20)))
        say(f"phase 2: {n_half} items at {half:.0f} items/s (half the maximum) for latency")
        _submit(channel, project_id, records[:n_half], "half", rate=half)
        finals_half = _wait_final(config, progress, project_id, "half", n_half, len(records))
        latencies = np.array([f.finalized_ms - f.ingested_ms for f in finals_half.values()])
        client.close()

    say(f"phase 3: standalone Triton, batches of {TRITON_BATCH}")
    triton_rate = _triton_rate(common.triton_grpc_url, project_id, texts)
    result = {
        "dataset": config.data,
        "project": project_id,
        "mode": "throughput",
        "items": len(records),
        "throughput_items_per_s": round(max_rate, 1),
        "half_rate_items_per_s": round(half, 1),
        "auto_latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
        },
        "triton_items_per_s": round(triton_rate, 1),
        "ratio_to_triton": round(max_rate / triton_rate, 3) if triton_rate else None,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    config.report.parent.mkdir(parents=True, exist_ok=True)
    config.report.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _submit(
    channel: grpc.Channel, project_id: str, records: list[Any], phase: str, rate: float | None
) -> float:
    """Submit `records` (ids suffixed with `phase`); returns the first submit's time in ms."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    size = SUBMIT_BATCH if rate is None else max(1, int(rate / 20))
    batches = [
        [
            common_pb2.Item(
                item_id=f"{r['id']}:{phase}",
                project_id=project_id,
                content=common_pb2.Content(text=r["text"]),
            )
            for r in records[i : i + size]
        ]
        for i in range(0, len(records), size)
    ]
    first_ms = time.time() * 1000
    begin = time.monotonic()

    def send(index: int) -> None:
        if rate is not None:
            delay = begin + index * size / rate - time.monotonic()
            if delay > 0:
                threading.Event().wait(delay)
        response = stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(items=batches[index]), timeout=120)
        if response.rejected:
            raise BenchError(f"{response.rejected} items rejected")

    workers = 4 if rate is None else 1
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, range(len(batches))))
    return first_ms


def _wait_final(
    config: BenchConfig, progress: Progress, project_id: str, phase: str, count: int, labeled_before: int
) -> dict[str, reports.FinalLabel]:
    """The final labels of the `count` items of `phase`. Waits on the project's labeled count in
    Redis (`labeled_before` + `count`), which costs the stack next to nothing, and only then reads
    the labels of record: replaying the whole `labels` topic in a loop took CPU from the system
    under measurement."""
    deadline = time.monotonic() + config.stall_timeout_s
    suffix = f":{phase}"
    finals: dict[str, reports.FinalLabel] = {}
    while True:
        counts = progress.counts(project_id)
        if counts.auto_labeled + counts.human_labeled >= labeled_before + count:
            finals = {
                e.ingested.item.item_id: reports.from_event(e)
                for e in replay(config.kafka_bootstrap, config.topic_prefix, LABELS, project_id=project_id)
                if e.ingested.item.project_id == project_id and e.ingested.item.item_id.endswith(suffix)
            }
            if len(finals) >= count:
                return finals
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(finals)}/{count} final labels after {config.stall_timeout_s:.0f}s")
        threading.Event().wait(0.1)


def _triton_rate(url: str, model: str, texts: list[str], concurrency: int = 8) -> float:
    """Items/s straight to Triton with TRITON_BATCH per request and `concurrency` in flight."""
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(url)
    chunks = [texts[i : i + TRITON_BATCH] for i in range(0, len(texts), TRITON_BATCH)]
    inputs = []
    for chunk in chunks:
        data = np.array([[t.encode("utf-8")] for t in chunk], dtype=np.object_)
        tensor = triton.InferInput("TEXT", list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    slots = threading.Semaphore(concurrency)
    done = threading.Semaphore(0)
    errors: list[str] = []

    def callback(result: Any, error: Any) -> None:
        if error is not None:
            errors.append(str(error))
        slots.release()
        done.release()

    started = time.perf_counter()
    for tensor in inputs:
        slots.acquire()
        client.async_infer(model, [tensor], callback=callback, outputs=[triton.InferRequestedOutput("PROBS")])
    for _ in inputs:
        done.acquire()
    seconds = time.perf_counter() - started
    client.close()
    if errors:
        raise BenchError(f"standalone Triton calls failed: {errors[:3]}")
    return len(texts) / seconds
