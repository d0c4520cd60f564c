"""`labelloop bench`: the whole loop on a labeled dataset whose labels are hidden from the system.

It brings up the local stack and the services if they are not running, creates a fresh project
from the labels found in the data, streams the items through the ingest gRPC API in file order
(at `rate` items/s, never more than `window` items without a final label, like a client that
feeds a labeling service as it keeps up), runs simulated annotators as separate gRPC clients of
the human-tasks API, and ends when every item has a final label (or fails after a stall). The
reference policy runs meanwhile in another process on the same stream. The report is computed
from the labels of record in Kafka.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from labelloop.bench import DEFAULT_ANNOTATOR_LATENCY_MS
from labelloop.bench import report as reports
from labelloop.bench.annotator_client import AnnotatorClient
from labelloop.bench.annotators import SimulatedAnnotator
from labelloop.core import grpc_client
from labelloop.core.errors import InvalidArgument
from labelloop.core.grpc_client import DEFAULT_TOKEN_FILE, MissingToken, resolve_token
from labelloop.core.label_log import replay
from labelloop.core.rules import parse_rule_file, validate_rule
from labelloop.core.settings import load
from labelloop.core.topics import ANNOTATIONS, LABELS, MODELS, PREDICTIONS, VOTES
from labelloop.datasets import labels_of
from labelloop.datasets import load as load_dataset
from labelloop.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    rules_pb2,
    rules_pb2_grpc,
)

Say = Callable[[str], None]


class BenchError(Exception):
    """The bench could not finish; the message says why."""


@dataclass
class BenchConfig:
    """What `labelloop bench` was asked to do."""

    data: str
    report: Path
    plot: Path | None = None
    limit: int | None = None
    target_precision: float = 0.95
    annotators: int = 1
    annotator_error: float = 0.0
    annotator_latency_ms: float = DEFAULT_ANNOTATOR_LATENCY_MS
    rate: float | None = None
    window: int = 100
    audit_rate: float = 0.02
    stall_timeout_s: float = 300.0
    seed: int = 0
    ingest_addr: str = "127.0.0.1:50051"
    human_tasks_addr: str = "127.0.0.1:50052"
    token: str = ""  # the API token (an admin's: it creates the project and acts for the simulated people)
    token_file: str = DEFAULT_TOKEN_FILE  # read when `token` is empty (after the stack is up)
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_prefix: str = "labelloop"
    reference: bool = True
    manage_stack: bool = True  # bring up the local stack (`make up`) when it is not running
    rules: Path | None = None  # a rule file (labelloop.core.rules) added to the bench's project
    extra: dict[str, Any] = field(default_factory=dict)


def api_token(config: BenchConfig) -> str:
    """The token the bench calls the APIs with; BenchError when none is configured."""
    try:
        return resolve_token(config.token, config.token_file)
    except MissingToken as exc:
        raise BenchError(str(exc)) from None


def reference_report(texts: list[str], labels: list[str], target: float, seed: int) -> dict[str, Any]:
    """The reference policy's summary (runs in a worker process)."""
    from labelloop.bench.reference import run_reference

    return run_reference(texts, labels, target_precision=target, seed=seed).as_report()


def _reference_worker(texts: list[str], labels: list[str], target: float, seed: int, out: Any) -> None:
    out.send(reference_report(texts, labels, target, seed))
    out.close()


class ReferenceRun:
    """The reference policy in a child process (it needs a core of its own for minutes), which
    is terminated with the bench: nothing is left running when the bench stops or fails."""

    def __init__(self, records: list[Any], config: BenchConfig) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._receive, send = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_reference_worker,
            args=(
                [r["text"] for r in records],
                [r["label"] for r in records],
                config.target_precision,
                config.seed,
                send,
            ),
            name="labelloop-bench-reference",
            daemon=True,
        )
        self._process.start()
        send.close()

    def result(self) -> dict[str, Any]:
        """Wait for the reference's report."""
        try:
            value: dict[str, Any] = self._receive.recv()
        except EOFError:
            raise BenchError(f"the reference policy failed (exit code {self._process.exitcode})") from None
        return value

    def stop(self) -> None:
        """Terminate the child if it still runs."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(10)
        self._receive.close()


def ensure_stack(say: Say) -> None:
    """Start the local stack and the services unless they are all running and healthy."""
    from labelloop.stack import LocalStack, StackSettings

    stack = LocalStack(load(StackSettings), say=say)
    if all(row.healthy for row in stack.status()):
        say("local stack and services: already running")
        return
    say("local stack and services: not all running; starting them (make up)")
    stack.up()


def load_rules(path: Path, labels: list[str]) -> list[rules_pb2.Rule]:
    """The rules of a rule file, checked against the dataset's labels; BenchError names the
    file and what is wrong (before anything starts)."""
    try:
        return [validate_rule(rule, labels) for rule in parse_rule_file(path.read_text(encoding="utf-8"))]
    except OSError as exc:
        raise BenchError(f"--rules {path}: {exc}") from None
    except InvalidArgument as exc:
        raise BenchError(f"--rules {path}: {exc}") from None


def run_bench(
    config: BenchConfig, say: Say = print, progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run the loop and write the report (and plot); returns the report."""
    started = time.perf_counter()
    records = load_dataset(config.data, config.limit)
    if not records:
        raise BenchError(f"{config.data}: no items")
    label_set = labels_of(records)
    if len(label_set) < 2:
        raise BenchError(f"{config.data}: need at least two distinct labels, found {label_set}")
    order = [r["id"] for r in records]
    truth = {r["id"]: r["label"] for r in records}
    say(f"dataset {config.data}: {len(records)} items, {len(label_set)} classes")
    rules = load_rules(config.rules, label_set) if config.rules else []

    reference = ReferenceRun(records, config) if config.reference else None
    try:
        if config.manage_stack:
            ensure_stack(say)
        project_id = f"bench-{''.join(c for c in Path(str(config.data)).stem.lower() if c.isalnum())[:20]}-{uuid.uuid4().hex[:6]}"
        config.token = api_token(config)
        with grpc_client.channel(config.ingest_addr, config.token) as channel:
            admin = admin_pb2_grpc.ProjectServiceStub(channel)
            admin.CreateProject(
                admin_pb2.CreateProjectRequest(
                    spec=common_pb2.ProjectSpec(
                        project_id=project_id,
                        labels=label_set,
                        target_precision=config.target_precision,
                        annotators_per_task=config.annotators,
                        audit_rate=config.audit_rate,
                        description=f"labelloop bench on {config.data}",
                    )
                ),
                timeout=30,
            )
            if rules:
                rule_api = rules_pb2_grpc.RuleServiceStub(channel)
                for rule in rules:
                    rule_api.AddRule(rules_pb2.AddRuleRequest(project_id=project_id, rule=rule), timeout=30)
                say(f"project {project_id}: {len(rules)} rules from {config.rules}")
            say(f"project {project_id}: streaming through {config.ingest_addr}")
            outcome = _stream(config, channel, admin, project_id, records, truth, label_set, progress)
        say("collecting the labels of record from Kafka")
        finals = {
            e.ingested.item.item_id: reports.from_event(e)
            for e in replay(config.kafka_bootstrap, config.topic_prefix, LABELS)
            if e.ingested.item.project_id == project_id
        }
        audits = sum(
            1
            for a in replay(config.kafka_bootstrap, config.topic_prefix, ANNOTATIONS)
            if a.project_id == project_id and a.audit
        )
        model_events = [
            e
            for e in replay(config.kafka_bootstrap, config.topic_prefix, MODELS)
            if e.project_id == project_id
        ]
        votes: dict[str, dict[str, str]] = {}
        for p in replay(config.kafka_bootstrap, config.topic_prefix, PREDICTIONS, project_id=project_id):
            votes[p.ingested.item.item_id] = {v.source: v.label for v in p.votes}  # the latest counts
        for cast in replay(config.kafka_bootstrap, config.topic_prefix, VOTES, project_id=project_id):
            votes.setdefault(cast.item_id, {})[cast.vote.source] = cast.vote.label
        summary = reports.summarize(
            order,
            truth,
            finals,
            first_submit_ms=outcome["first_submit_ms"],
            audit_tasks=audits,
            retrains=sum(e.kind == events_pb2.MODEL_EVENT_KIND_TRAINED for e in model_events),
            promotions=sum(e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED for e in model_events),
        )
        promoted_at = [
            e.at.ToMilliseconds() for e in model_events if e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED
        ]
        submits: list[tuple[float, int]] = outcome["submits"]
        positions = [max((n for t, n in submits if t <= at), default=0) for at in promoted_at]
        result: dict[str, Any] = {
            "dataset": config.data,
            "project": project_id,
            **summary,
            "target_precision": config.target_precision,
            "annotators": config.annotators,
            "annotator_error": config.annotator_error,
            "annotator_latency_ms": config.annotator_latency_ms,
            "rate": config.rate,
            "window": config.window,
            "wall_s": 0.0,
            "promotion_positions": positions,
            "windows": reports.windows(order, truth, finals, max(50, len(order) // 30)),
            "sources": reports.source_stats(votes, truth),
            **config.extra,
        }
        if reference is not None:
            say("waiting for the reference policy")
            result["reference"] = reference.result()
        result["wall_s"] = round(time.perf_counter() - started, 2)
    finally:
        if reference is not None:
            reference.stop()
    config.report.parent.mkdir(parents=True, exist_ok=True)
    config.report.write_text(json.dumps(result, indent=2) + "\n")
    if config.plot is not None:
        reports.plot(result, config.plot)
    return result


def _stream(
    config: BenchConfig,
    channel: grpc.Channel,
    admin: admin_pb2_grpc.ProjectServiceStub,
    project_id: str,
    records: list[Any],
    truth: dict[str, str],
    label_set: list[str],
    progress: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    stop = threading.Event()
    people = [
        SimulatedAnnotator(f"sim-{i}", label_set, config.annotator_error, config.seed)
        for i in range(config.annotators + 1)
    ]
    clients = [
        AnnotatorClient(
            config.human_tasks_addr,
            project_id,
            person.annotator_id,
            (lambda task, p=person: p.answer(truth[task.ingested.item.item_id])),
            stop,
            latency_ms=config.annotator_latency_ms,
            token=config.token,
        )
        for person in people
    ]
    for client in clients:
        client.start()
    state = {"submitted": 0, "final": 0, "first_submit_ms": 0.0, "submits": [], "error": None}
    submitter = threading.Thread(
        target=_submit_all, args=(config, channel, project_id, records, state, stop), daemon=True
    )
    submitter.start()
    last_final, last_change = -1, time.monotonic()
    try:
        while True:
            if state["error"]:
                raise BenchError(f"submitting items failed: {state['error']}")
            status = admin.GetProjectStatus(
                admin_pb2.GetProjectStatusRequest(project_id=project_id), timeout=30
            )
            final = status.auto_labeled + status.human_labeled
            state["final"] = final
            if progress is not None:
                progress(
                    {
                        "items": len(records),
                        "submitted": state["submitted"],
                        "ingested": status.ingested,
                        "auto_labeled": status.auto_labeled,
                        "waiting_for_people": status.waiting_for_people,
                        "human_labeled": status.human_labeled,
                        "serving_version": status.serving_version,
                        "threshold": status.threshold,
                    }
                )
            if final >= len(records):
                break
            if final != last_final:
                last_final, last_change = final, time.monotonic()
            elif time.monotonic() - last_change > config.stall_timeout_s:
                raise BenchError(
                    f"stalled: no new final label for {config.stall_timeout_s:.0f}s at {final}/{len(records)} "
                    f"(ingested {status.ingested}, waiting for people {status.waiting_for_people}); "
                    "check `make status` and the logs under .run/"
                )
            stop.wait(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(10)
        submitter.join(10)
    return state


def _submit_all(
    config: BenchConfig,
    channel: grpc.Channel,
    project_id: str,
    records: list[Any],
    state: dict[str, Any],
    stop: threading.Event,
) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    batch = 50 if config.rate is None else max(1, min(50, int(config.rate / 10) or 1))
    begin = time.monotonic()
    try:
        for start in range(0, len(records), batch):
            while not stop.is_set() and state["submitted"] - state["final"] >= config.window:
                stop.wait(0.05)
            if config.rate:
                due = begin + start / config.rate
                stop.wait(max(0.0, due - time.monotonic()))
            if stop.is_set():
                return
            chunk = records[start : start + batch]
            items = [
                common_pb2.Item(
                    item_id=r["id"], project_id=project_id, content=common_pb2.Content(text=r["text"])
                )
                for r in chunk
            ]
            if not state["first_submit_ms"]:
                state["first_submit_ms"] = time.time() * 1000
            response = stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=60)
            if response.rejected:
                bad = [r.error_message for r in response.results if r.error_message][:3]
                raise BenchError(f"{response.rejected} items rejected, e.g. {bad}")
            state["submitted"] += len(chunk)
            state["submits"].append((time.time() * 1000, state["submitted"]))
    except Exception as exc:  # reported by the main loop
        state["error"] = f"{type(exc).__name__}: {exc}"
