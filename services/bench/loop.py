"""`labelloop bench`: the whole loop on a labeled dataset whose labels are hidden from the system.

It brings up the local stack and the services if they are not running, creates a fresh project
from the labels found in the data, streams the items through the ingest gRPC API in file order
(at `rate` items/s, never more than `window` items without a final label, like a client that
feeds a labeling service as it keeps up), runs simulated annotators as separate gRPC clients of
the human-tasks API, and ends when the project's `labels` topic holds a final label for every
item (or fails after a stall). "Final label" means read from that topic (FinalLabelWatcher), both
for the window and for the end. The annotators then answer the audits still queued (at most
`drain_timeout_s`), so `human_effort` counts the audits the system asked for. The reference policy runs meanwhile in another process on the
same stream, once per seed of its held-out split. The report is computed from the raw `labels`
and `annotations` topics (report.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from labelloop.bench import DEFAULT_ANNOTATOR_LATENCY_MS
from labelloop.bench import report as reports
from labelloop.bench.annotator_client import AnnotatorClient
from labelloop.bench.annotators import SimulatedAnnotator
from labelloop.bench.chaos import Chaos
from labelloop.bench.cold_start import cold_start, wait_for_prior
from labelloop.bench.final_labels import FinalLabelWatcher
from labelloop.bench.llm import BenchLlm, LlmOptions
from labelloop.bench.multilabel import is_multi_label_stream, multi_label_reference_seeds, multi_label_summary
from labelloop.core import grpc_client
from labelloop.core.errors import InvalidArgument
from labelloop.core.grpc_client import DEFAULT_TOKEN_FILE, MissingToken, resolve_token
from labelloop.core.label_log import duplicated, label_records, latest_labels, replay
from labelloop.core.projects import DEFAULT_AUDIT_RATE
from labelloop.core.rules import parse_rule_file, validate_rule
from labelloop.core.settings import load
from labelloop.core.topics import ANNOTATIONS, MODELS, PREDICTIONS, TASKS, VOTES
from labelloop.datasets import content_of, labels_of
from labelloop.datasets import load as load_dataset
from labelloop.datasets.images import media_store
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


#: The reference's processes run this much nicer than the system under measurement: they use
#: the CPU the loop leaves idle (people's latency, waits) instead of slowing it down.
REFERENCE_NICENESS = 10
#: Processes the reference's seeds are shared among (the machine's 2 cores, at REFERENCE_NICENESS).
REFERENCE_WORKERS = 2


def default_reference_cache() -> Path:
    """Where reference runs are kept between benches: `<repo root>/.cache/bench-reference`."""
    return Path(__file__).resolve().parents[2] / ".cache" / "bench-reference"


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
    audit_rate: float = DEFAULT_AUDIT_RATE
    stall_timeout_s: float = 300.0
    drain_timeout_s: float = 120.0  # for the audits still queued once every item is final
    seed: int = 0
    ingest_addr: str = "127.0.0.1:50051"
    human_tasks_addr: str = "127.0.0.1:50052"
    token: str = ""  # the API token (an admin's: it creates the project and acts for the simulated people)
    token_file: str = DEFAULT_TOKEN_FILE  # read when `token` is empty (after the stack is up)
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_prefix: str = "labelloop"
    reference: bool = True
    reference_seeds: int = 5  # seeds of the reference's random held-out split (mean and range)
    reference_cache: Path | None = field(default_factory=default_reference_cache)
    manage_stack: bool = True  # bring up the local stack (`make up`) when it is not running
    rules: Path | None = None  # a rule file (labelloop.core.rules) added to the bench's project
    llm: LlmOptions = field(default_factory=LlmOptions)  # the LLM source and its endpoint (bench/llm.py)
    chaos: bool = False  # inject faults into the local stack during the stream (bench/chaos.py)
    chaos_outage_s: float = 30.0  # how long Triton and MLflow are down
    chaos_stack: Any = None  # the LocalStack to inject faults into (default: `make up`'s)
    extra: dict[str, Any] = field(default_factory=dict)
    # Before streaming a text project, wait this long for the zero-shot prior to serve (0: don't;
    # the CLI sets `bench/cold_start.prior_wait_default()`).
    prior_wait_s: float = 0.0


def api_token(config: BenchConfig) -> str:
    """The token the bench calls the APIs with; BenchError when none is configured."""
    try:
        return resolve_token(config.token, config.token_file)
    except MissingToken as exc:
        raise BenchError(str(exc)) from None


def reference_runs(
    texts: list[str],
    labels: list[str],
    target: float,
    seeds: list[int],
    cache_dir: Path | None = None,
    media_root: str | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """The reference policy's per-seed summaries for `seeds`, one after another (see
    ReferenceSpread; cached in `cache_dir`), and the seconds they took. With `media_root` the
    `texts` are image URIs under it and the reference uses the image features."""
    from labelloop.bench.reference import run_reference_seeds

    spread = run_reference_seeds(
        texts, labels, target, seeds=seeds, cache_dir=cache_dir, media_root=media_root
    )
    return list(spread.runs), spread.wall_s


def _reference_worker(
    texts: list[str],
    labels: list[str],
    target: float,
    seeds: list[int],
    cache_dir: Path | None,
    media_root: str | None,
    out: Any,
) -> None:
    os.nice(REFERENCE_NICENESS)
    out.send(reference_runs(texts, labels, target, seeds, cache_dir, media_root))
    out.close()


class ReferenceRun:
    """The reference policy over its seeds `config.seed + REFERENCE_SEEDS`, in REFERENCE_WORKERS
    child processes at REFERENCE_NICENESS (it needs minutes of CPU on 20 Newsgroups), which are
    terminated with the bench: nothing is left running when the bench stops or fails."""

    def __init__(self, records: list[Any], config: BenchConfig) -> None:
        from labelloop.bench.reference import REFERENCE_SEEDS

        ctx = multiprocessing.get_context("spawn")
        texts = [r["media"]["uri"] if "media" in r else r["text"] for r in records]
        media_root = media_store().root_uri if records and "media" in records[0] else None
        labels = [r["label"] for r in records]
        self._seeds = [config.seed + s for s in REFERENCE_SEEDS[: max(1, config.reference_seeds)]]
        self._children: list[tuple[Any, Any]] = []
        for worker in range(REFERENCE_WORKERS):
            receive, send = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=_reference_worker,
                args=(
                    texts,
                    labels,
                    config.target_precision,
                    self._seeds[worker::REFERENCE_WORKERS],
                    config.reference_cache,
                    media_root,
                    send,
                ),
                name=f"labelloop-bench-reference-{worker}",
                daemon=True,
            )
            process.start()
            send.close()
            self._children.append((process, receive))

    def result(self) -> dict[str, Any]:
        """Wait for every seed; the mean, ranges and runs (ReferenceSpread.as_report)."""
        from labelloop.bench.reference import ReferenceSpread

        runs: list[dict[str, Any]] = []
        wall_s = 0.0
        for process, receive in self._children:
            # poll, not a bare recv: a child that dies before it unpickled its pipe leaves the
            # pipe open in this process (spawn's fd sharer), so no EOF would ever come
            while not receive.poll(1.0):
                if not process.is_alive() and not receive.poll(0):
                    raise BenchError(f"the reference policy failed (exit code {process.exitcode})")
            try:
                done, seconds = receive.recv()
            except EOFError:
                raise BenchError(f"the reference policy failed (exit code {process.exitcode})") from None
            runs.extend(done)
            wall_s = max(wall_s, seconds)
        runs.sort(key=lambda run: self._seeds.index(run["seed"]))
        return ReferenceSpread(tuple(self._seeds), tuple(runs), round(wall_s, 2)).as_report()

    def stop(self) -> None:
        """Terminate the children that still run."""
        for process, receive in self._children:
            if process.is_alive():
                process.terminate()
            process.join(10)
            receive.close()


def ensure_stack(say: Say) -> None:
    """Start the local stack and the services unless they are all running and healthy."""
    from labelloop.stack import LocalStack, StackSettings

    stack = LocalStack(load(StackSettings), say=say)
    if all(row.healthy for row in stack.status()):
        say("local stack and services: already running")
        return
    say("local stack and services: not all running; starting them (make up)")
    stack.up()


def _chaos(config: BenchConfig, watcher: FinalLabelWatcher, total: int, say: Say) -> Chaos:
    """Start injecting faults into the configured stack (default: the one `make up` starts)."""
    stack = config.chaos_stack
    if stack is None:
        from labelloop.stack import LocalStack, StackSettings

        stack = LocalStack(load(StackSettings), say=None)
    chaos = Chaos(stack, watcher.count, total, outage_s=config.chaos_outage_s, seed=config.seed, say=say)
    chaos.start()
    return chaos


def _chaos_report(config: BenchConfig, project_id: str, order: list[str], chaos: Chaos) -> dict[str, Any]:
    """`lost` (items without a final-label record) and `duplicates` (items with more than one),
    counted in the raw labels topic as the pipeline reads it (read_committed), and the faults."""
    records = label_records(config.kafka_bootstrap, config.topic_prefix, project_id)
    twice = duplicated(records)
    return {
        "lost": sum(1 for item_id in order if item_id not in records),
        "duplicates": len(twice),
        # what each duplicated item's records said (the first 20), to find where it came from
        "duplicated_items": {
            item_id: [
                {
                    "source": common_pb2.LabelSource.Name(r.source),
                    "labels": list(r.labels),
                    "model_version": r.model_version,
                    "annotators": list(r.annotators),
                    "audited": r.audited,
                    "finalized_ms": r.finalized_at.ToMilliseconds(),
                }
                for r in records[item_id]
            ]
            for item_id in sorted(twice)[:20]
        },
        "faults": chaos.results(),
        "faults_not_injected": chaos.not_injected(),
    }


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
    multi = is_multi_label_stream(records)  # records with label lists (bench/multilabel.py)
    if multi:
        label_set = sorted({label for r in records for label in r.get("labels", [])})
        if config.annotator_error > 0 or config.rules or config.chaos:
            raise BenchError(
                f"{config.data}: multi-label benches run with perfect people, no rules, no chaos"
            )
    else:
        label_set = labels_of(records)
    if len(label_set) < 2:
        raise BenchError(f"{config.data}: need at least two distinct labels, found {label_set}")
    order = [r["id"] for r in records]
    truth: dict[str, Any] = {r["id"]: (tuple(r.get("labels", [])) if multi else r["label"]) for r in records}
    say(
        f"dataset {config.data}: {len(records)} items, {len(label_set)} {'labels (multi-label)' if multi else 'classes'}"
    )
    rules = load_rules(config.rules, label_set) if config.rules else []
    if config.llm.enabled:
        problem = config.llm.check()
        if problem is None and not config.manage_stack:
            problem = "--llm-url / --llm-sim-accuracy start the LLM source on the bench's own stack"
        if problem is None and "media" in records[0]:
            problem = "the LLM source asks about text items only"
        if problem is not None:
            raise BenchError(problem)

    reference = ReferenceRun(records, config) if config.reference and not multi else None
    try:
        if config.manage_stack:
            ensure_stack(say)
        project_id = f"bench-{''.join(c for c in Path(str(config.data)).stem.lower() if c.isalnum())[:20]}-{uuid.uuid4().hex[:6]}"
        llm: BenchLlm | None = None
        with contextlib.ExitStack() as resources:
            if config.llm.enabled:
                truth_by_text = {content_of(r).text: r["label"] for r in records}
                llm = resources.enter_context(BenchLlm(config.llm, truth_by_text, config.seed))
                say(f"LLM source: {llm.source} at {llm.server.url if llm.server else config.llm.url}")
            try:
                # before the project exists: it starts at the labels topic's end offsets
                watcher = resources.enter_context(
                    FinalLabelWatcher(config.kafka_bootstrap, config.topic_prefix)
                )
            except LookupError as exc:
                raise BenchError(str(exc)) from None
            config.token = api_token(config)
            channel = resources.enter_context(grpc_client.channel(config.ingest_addr, config.token))
            admin = admin_pb2_grpc.ProjectServiceStub(channel)
            admin.CreateProject(
                admin_pb2.CreateProjectRequest(
                    spec=common_pb2.ProjectSpec(
                        project_id=project_id,
                        labels=label_set,
                        modality=common_pb2.MODALITY_IMAGE
                        if "media" in records[0]
                        else common_pb2.MODALITY_TEXT,
                        task_type=common_pb2.TASK_TYPE_MULTI_LABEL
                        if multi
                        else common_pb2.TASK_TYPE_SINGLE_LABEL,
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
            if config.prior_wait_s > 0 and "media" not in records[0]:
                wait_for_prior(admin, project_id, config.prior_wait_s, say)
            watcher.watch(project_id)
            say(f"project {project_id}: streaming through {config.ingest_addr}")
            chaos = _chaos(config, watcher, len(records), say) if config.chaos else None
            try:
                outcome = _stream(
                    config,
                    channel,
                    admin,
                    project_id,
                    records,
                    truth,
                    label_set,
                    watcher,
                    progress,
                    chaos,
                    multi,
                )
            finally:
                if chaos is not None:  # restores a component it has down, then ends
                    chaos.stop()
                    chaos.join()
            finals = watcher.finals()
            label_events = watcher.events
            llm_report = llm.report(project_id) if llm is not None else None
        say("collecting people's answers from Kafka")
        answers = [
            a
            for a in replay(config.kafka_bootstrap, config.topic_prefix, ANNOTATIONS, project_id=project_id)
            if a.project_id == project_id
        ]
        annotations = reports.count_annotations(answers)
        model_events = [
            e
            for e in replay(config.kafka_bootstrap, config.topic_prefix, MODELS)
            if e.project_id == project_id
        ]
        if multi:
            multi_result = _multi_label_result(
                config, project_id, order, truth, label_set, annotations, model_events, outcome, say
            )
            multi_result["wall_s"] = round(time.perf_counter() - started, 2)
            config.report.parent.mkdir(parents=True, exist_ok=True)
            config.report.write_text(json.dumps(multi_result, indent=2) + "\n")
            return multi_result
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
            annotations=annotations,
            retrains=sum(e.kind == events_pb2.MODEL_EVENT_KIND_TRAINED for e in model_events),
            promotions=sum(e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED for e in model_events),
        )
        promoted_at = [
            e.at.ToMilliseconds() for e in model_events if e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED
        ]
        submits: list[tuple[float, float, int]] = outcome["submits"]
        positions = [max((n for _, t, n in submits if t <= at), default=0) for at in promoted_at]
        result: dict[str, Any] = {
            "dataset": config.data,
            "project": project_id,
            **summary,
            "target_precision": config.target_precision,
            "annotators": config.annotators,
            "audit_rate": config.audit_rate,
            "annotator_error": config.annotator_error,
            "annotator_latency_ms": config.annotator_latency_ms,
            "rate": config.rate,
            "window": config.window,
            "max_without_final_label": reports.max_without_final_label(
                [(before, n) for before, _, n in submits], (f.finalized_ms for f in finals.values())
            ),
            "label_events": label_events,
            "audits_routed": outcome.get("audits_routed", 0),
            "audits_unanswered": outcome.get("audits_unanswered", 0),
            "wall_s": 0.0,
            "promotion_positions": positions,
            "windows": reports.windows(order, truth, finals, max(50, len(order) // 30), annotations),
            "sources": reports.source_stats(votes, truth),
            **reports.withdrawn_stats(
                (
                    t
                    for t in replay(config.kafka_bootstrap, config.topic_prefix, TASKS, project_id=project_id)
                    if t.ingested.item.project_id == project_id
                ),
                truth,
                finals,
            ),
            **reports.family_stats(finals, truth, model_events),
            **({"llm": llm_report} if llm_report is not None else {}),
            "cold_start": cold_start(truth, finals, model_events),
            **(
                {"label_issues": _label_issues(config, project_id, truth, finals, answers, model_events)}
                if config.annotator_error > 0
                else {}
            ),
            **config.extra,
        }
        if chaos is not None:
            result.update(_chaos_report(config, project_id, order, chaos))
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


def _multi_label_result(
    config: BenchConfig,
    project_id: str,
    order: list[str],
    truth: dict[str, Any],
    label_set: list[str],
    annotations: reports.AnnotationCount,
    model_events: list[events_pb2.ModelEvent],
    outcome: dict[str, Any],
    say: Say,
) -> dict[str, Any]:
    """A multi-label run's report (bench/multilabel.py), from the raw labels topic."""
    finals = latest_labels(config.kafka_bootstrap, config.topic_prefix, project_id)
    result: dict[str, Any] = {
        "dataset": config.data,
        "project": project_id,
        "task_type": "multi-label",
        "labels": label_set,
        **multi_label_summary(order, truth, finals, label_set, annotations),
        "target_precision": config.target_precision,
        "annotators": config.annotators,
        "audit_rate": config.audit_rate,
        "annotator_error": config.annotator_error,
        "annotator_latency_ms": config.annotator_latency_ms,
        "window": config.window,
        "retrains": sum(e.kind == events_pb2.MODEL_EVENT_KIND_TRAINED for e in model_events),
        "promotions": sum(e.kind == events_pb2.MODEL_EVENT_KIND_PROMOTED for e in model_events),
        "audits_routed": outcome.get("audits_routed", 0),
        "audits_unanswered": outcome.get("audits_unanswered", 0),
        "wall_s": 0.0,
        **config.extra,
    }
    if config.reference:
        say("running the reference policy (extended to label lists)")
        texts = {r_id: text for r_id, text in zip(order, _texts_of(config, order), strict=True)}
        result["reference"] = multi_label_reference_seeds(
            [texts[i] for i in order],
            [list(truth[i]) for i in order],
            label_set,
            config.target_precision,
            [config.seed + s for s in range(config.reference_seeds)],
            say,
        )
    return result


def _texts_of(config: BenchConfig, order: list[str]) -> list[str]:
    by_id = {r["id"]: r["text"] for r in load_dataset(config.data, config.limit)}
    return [by_id[i] for i in order]


def _label_issues(
    config: BenchConfig,
    project_id: str,
    truth: dict[str, str],
    finals: dict[str, reports.FinalLabel],
    answers: list[events_pb2.AnnotationSubmitted],
    model_events: list[events_pb2.ModelEvent],
) -> dict[str, Any]:
    """The label checks' findings against the hidden labels (report.label_issue_stats), cut at
    the end of the last training in `model_events` (``trained_until_ms``): flagged labels from the
    review tasks on `tasks` routed by then (a training checks labels before it ends, and one still
    running when the stream ends may flag more later); the labels that reached training are
    people's final labels and audits' answers from before then."""
    trained = [e.at.ToMilliseconds() for e in model_events if e.kind == events_pb2.MODEL_EVENT_KIND_TRAINED]
    last = max(trained, default=0)
    flagged = {
        t.ingested.item.item_id: t.review_of.labels[0]
        for t in replay(config.kafka_bootstrap, config.topic_prefix, TASKS, project_id=project_id)
        if t.reason == events_pb2.TASK_REASON_REVIEW
        and t.review_of.labels
        and t.routed_at.ToMilliseconds() <= last
    }
    in_training = {
        f.item_id: f.label for f in finals.values() if f.source == reports.HUMAN and f.finalized_ms <= last
    }
    for a in answers:
        if a.audit and a.consensus_labels and a.annotated_at.ToMilliseconds() <= last:
            in_training[a.item_id] = a.consensus_labels[0]
    return {**reports.label_issue_stats(flagged, in_training, truth), "trained_until_ms": last}


def annotator_pool(annotators_per_task: int) -> int:
    """How many simulated people work a project that asks `annotators_per_task` (k) per task.

    One more than k, so a task is never waiting for the people who already answered it; and,
    when k > 1, one more again: a tie calls one more annotator, and a second tie in a row (1-1-1
    of three, then a fourth distinct label: about 1 task in 1,000 at 10% error over 5 classes)
    calls a fifth. With k + 1 people that task waited forever and the run stalled at 199/200.
    With k = 1 too: a review of a flagged label (label_checks) excludes its annotator, and a
    reviewer who disagrees makes a tie that calls a third person.
    """
    return annotators_per_task + 2


def submission_size(submitted: int, finalized: int, window: int, batch: int, remaining: int) -> int:
    """How many items the bench may submit now: at most `batch` and the `remaining` ones, and no
    more than keeps `window` items without a final label (`submitted - finalized` are without one
    now). 0 means wait for final labels. A whole batch whenever there was any room let the window
    overshoot by a batch less one (149 for 100)."""
    return max(0, min(batch, remaining, window - (submitted - finalized)))


def _stream(
    config: BenchConfig,
    channel: grpc.Channel,
    admin: admin_pb2_grpc.ProjectServiceStub,
    project_id: str,
    records: list[Any],
    truth: dict[str, Any],
    label_set: list[str],
    watcher: FinalLabelWatcher,
    progress: Callable[[dict[str, Any]], None] | None,
    chaos: Chaos | None = None,
    multi: bool = False,
) -> dict[str, Any]:
    """Submit the items and run the annotators until the labels topic holds a final label for
    every item; returns the submitter's state (`submits`: (ms before the call, ms after it, items
    submitted once it returned) per SubmitBatch call). With `chaos`, the last items wait until
    every fault was injected, so that no fault is left out because the stream ended first, and
    the held items show the last one's recovery. `multi`: `truth` holds label lists, which the
    (perfect) people answer as they are."""
    stop = threading.Event()
    people = [
        SimulatedAnnotator(f"sim-{i}", label_set, config.annotator_error, config.seed)
        for i in range(annotator_pool(config.annotators))
    ]

    def answer_of(person: SimulatedAnnotator) -> Callable[[events_pb2.TaskRouted], Any]:
        if multi:  # perfect people: the hidden label list as it is
            return lambda task: truth[task.ingested.item.item_id]
        return lambda task: person.answer(truth[task.ingested.item.item_id])

    clients = [
        AnnotatorClient(
            config.human_tasks_addr,
            project_id,
            person.annotator_id,
            answer_of(person),
            stop,
            latency_ms=config.annotator_latency_ms,
            token=config.token,
        )
        for person in people
    ]
    for client in clients:
        client.start()
    state: dict[str, Any] = {
        "submitted": 0,
        "first_submit_ms": 0.0,
        "submits": [],
        "error": None,
        "holding": False,
    }
    if chaos is not None:
        chaos.drained = lambda: bool(state["holding"]) and watcher.count() >= state["submitted"]
    submitter = threading.Thread(
        target=_submit_all,
        args=(config, channel, project_id, records, state, watcher, stop, chaos),
        daemon=True,
    )
    submitter.start()
    last_final, last_change, last_progress = -1, time.monotonic(), 0.0
    try:
        while True:
            if state["error"]:
                raise BenchError(f"submitting items failed: {state['error']}")
            final = watcher.count()
            if progress is not None and time.monotonic() - last_progress >= 0.5:
                last_progress = time.monotonic()
                _show_progress(admin, project_id, len(records), state["submitted"], final, progress)
            if final >= len(records):
                _drain_audits(config, project_id, state, stop)
                break
            # Held back on purpose (chaos: the last items wait for the last fault) is not a stall
            # while every item sent has its final label; an item sent and stuck is one, held or not.
            if final != last_final or (state["holding"] and final >= state["submitted"]):
                last_final, last_change = final, time.monotonic()
            elif time.monotonic() - last_change > config.stall_timeout_s:
                raise BenchError(
                    f"stalled: no new final label for {config.stall_timeout_s:.0f}s at {final}/{len(records)} "
                    f"(submitted {state['submitted']}); check `make status` and the logs under .run/"
                )
            watcher.wait_beyond(final, 0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(10)
        submitter.join(10)
    return state


def audit_work(
    tasks: Iterable[events_pb2.TaskRouted], answers: Iterable[events_pb2.AnnotationSubmitted]
) -> tuple[int, int]:
    """(answers the routed audit tasks ask for, those given), for one project's events: each
    audit task asks `annotators_required` answers (at least 1); answers count once per lease."""
    required = {
        t.task_id: max(1, t.annotators_required)
        for t in tasks
        if t.reason == events_pb2.TASK_REASON_AUDIT and not t.HasField("withdraw")
    }
    leases: dict[str, set[str]] = {}
    for a in answers:
        if a.audit:
            leases.setdefault(a.task_id, set()).add(a.lease_id or f"{a.annotator_id}:{len(leases)}")
    return sum(required.values()), sum(min(len(leases.get(t, ())), k) for t, k in required.items())


def _drain_audits(config: BenchConfig, project_id: str, state: dict[str, Any], stop: threading.Event) -> None:
    """Once every item is final, let the annotators answer the audits still queued (people
    would; leaving them out would under-count `human_effort`), for at most
    `config.drain_timeout_s`. Sets `audits_routed` and `audits_unanswered` in `state`."""
    deadline = time.monotonic() + config.drain_timeout_s
    while True:
        routed, answered = audit_work(
            (
                t
                for t in replay(config.kafka_bootstrap, config.topic_prefix, TASKS, project_id=project_id)
                if t.ingested.item.project_id == project_id
            ),
            (
                a
                for a in replay(
                    config.kafka_bootstrap, config.topic_prefix, ANNOTATIONS, project_id=project_id
                )
                if a.project_id == project_id
            ),
        )
        state["audits_routed"], state["audits_unanswered"] = routed, routed - answered
        if answered >= routed or time.monotonic() > deadline or stop.is_set():
            return
        stop.wait(1.0)


def _show_progress(
    admin: admin_pb2_grpc.ProjectServiceStub,
    project_id: str,
    items: int,
    submitted: int,
    final: int,
    progress: Callable[[dict[str, Any]], None],
) -> None:
    """Report progress: the bench's own counts plus the project's status (display only)."""
    status = admin.GetProjectStatus(admin_pb2.GetProjectStatusRequest(project_id=project_id), timeout=30)
    progress(
        {
            "items": items,
            "submitted": submitted,
            "final": final,
            "ingested": status.ingested,
            "auto_labeled": status.auto_labeled,
            "waiting_for_people": status.waiting_for_people,
            "human_labeled": status.human_labeled,
            "serving_version": status.serving_version,
            "threshold": status.threshold,
        }
    )


def _submit_all(
    config: BenchConfig,
    channel: grpc.Channel,
    project_id: str,
    records: list[Any],
    state: dict[str, Any],
    watcher: FinalLabelWatcher,
    stop: threading.Event,
    chaos: Chaos | None = None,
) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    batch = 50 if config.rate is None else max(1, min(50, int(config.rate / 10) or 1))
    begin = time.monotonic()
    start = 0
    # under chaos, the last 5% wait for the last fault (whose moment is before 10/11 of the stream)
    held_from = len(records) - max(1, len(records) // 20) if chaos is not None else len(records)
    try:
        while start < len(records):
            if chaos is not None and start >= held_from:
                state["holding"] = True
                while not stop.is_set() and not chaos.injected_all:
                    stop.wait(0.2)
                state["holding"] = False
            size = submission_size(start, watcher.count(), config.window, batch, len(records) - start)
            while not stop.is_set() and size == 0:
                finalized = watcher.wait_beyond(start - config.window, 0.5)
                size = submission_size(start, finalized, config.window, batch, len(records) - start)
            if config.rate:
                due = begin + start / config.rate
                stop.wait(max(0.0, due - time.monotonic()))
            if stop.is_set():
                return
            chunk = records[start : start + size]
            items = [
                common_pb2.Item(item_id=r["id"], project_id=project_id, content=content_of(r)) for r in chunk
            ]
            before_ms = time.time() * 1000
            if not state["first_submit_ms"]:
                state["first_submit_ms"] = before_ms
            request = ingest_pb2.SubmitBatchRequest(items=items)
            response = grpc_client.call_with_retry(functools.partial(stub.SubmitBatch, request, timeout=60))
            if response.rejected:
                bad = [r.error_message for r in response.results if r.error_message][:3]
                raise BenchError(f"{response.rejected} items rejected, e.g. {bad}")
            start += len(chunk)
            state["submitted"] = start
            state["submits"].append((before_ms, time.time() * 1000, start))
    except Exception as exc:  # reported by the main loop
        state["error"] = f"{type(exc).__name__}: {exc}"
