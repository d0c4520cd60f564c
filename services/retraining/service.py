"""The retraining service: label intake, the trigger per project, and the training worker.

It owns the projects' labeled sets (human labels from `labels`, audits' and reviews' verdicts
from `annotations`) and their triggers. A due training runs in one worker thread
(`training.Trainer`: fit, calibrate, check, register, gate). What serves, and under which
threshold, is `lifecycle.ModelLifecycle`'s alone: the gate's outcome, a person's promote or
rollback, the threshold moves from people's answers and the start-up reconciliation all go
through it.

Threads: the consume loop (`handle`, `schedule`) owns the labeled sets and triggers (guarded by
each project's lock); trainings run in one worker thread (one at a time on a small machine;
never two of one project, by the trigger's ticket); the gRPC API thread calls the lifecycle's
`promote` and `rollback`, and `request_retrain`. A training starts only when the worker is free,
and then the most urgent of the due ones (`triggers.urgency`: a person's request, a first model,
new labels, then the timer); the worker picks the next as it finishes. Due trainings are never
queued behind one another, so a project whose people wait for a model waits for one training
at most, not for every timer training of the idle projects.

An archived project (core/projects.py) trains nothing: the loop's scan (`ArchivedScan`) hands
each one to the worker once, which has the lifecycle retire its model; due trainings, priors and
on-demand retrains of it are refused from then on.

State lives outside the process: labels in Kafka (replayed on start), models, metrics,
thresholds and the champion history in MLflow, thresholds and the answer sample in Redis, versions
in the model repository.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from labelloop.core import metrics
from labelloop.core.answers import Answer, AnswerLedger, answer_of, label_set_answer_of
from labelloop.core.errors import FailedPrecondition, NotFound
from labelloop.core.label_log import replay
from labelloop.core.projects import ProjectStore, is_archived
from labelloop.core.stream import Batch
from labelloop.core.topics import ANNOTATIONS, LABELS
from labelloop.retraining.dataset import LabeledSet, Snapshot, joined
from labelloop.retraining.lifecycle import ModelLifecycle
from labelloop.retraining.model_events import announce, model_event
from labelloop.retraining.registry import CHAMPION, Registry
from labelloop.retraining.settings import RetrainingSettings
from labelloop.retraining.training import Trainer
from labelloop.retraining.triggers import (
    NotDueError,
    RetrainTrigger,
    TrainingTicket,
    TriggerPolicy,
    urgency,
)
from labelloop.retraining.zero_shot import PriorScan, ZeroShotPrior
from labelloop.v1 import common_pb2, events_pb2

__all__ = ["RetrainingService"]

log = logging.getLogger("retraining")


class ArchivedScan:
    """The archived projects (core/projects.py): each is offered for retiring once per process,
    again after a failed retire. The project list is read at most every `every_s` seconds (the
    loop calls `due` after every batch and when idle). Thread-safe; `clock` is injectable."""

    def __init__(self, every_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.archived: set[str] = set()  # every project seen archived: none of them trains
        self._offered: set[str] = set()
        self._next_scan = 0.0
        self._lock = threading.Lock()

    def due(self, projects: ProjectStore) -> list[common_pb2.Project]:
        """Archived projects not offered yet (or whose retire failed), now marked offered."""
        with self._lock:
            if self.clock() < self._next_scan:
                return []
            self._next_scan = self.clock() + self.every_s
        try:
            listed = [p for p in projects.list() if is_archived(p)]
        except Exception as exc:  # Redis down: the next call tries again; never fails the loop
            log.warning("archived projects: cannot list projects: %s", exc)
            return []
        with self._lock:
            fresh = [p for p in listed if p.spec.project_id not in self._offered]
            self.archived.update(p.spec.project_id for p in listed)
            self._offered.update(p.spec.project_id for p in fresh)
        return fresh

    def failed(self, pid: str) -> None:
        """Retiring `pid` failed: offer it again at the next scan."""
        with self._lock:
            self._offered.discard(pid)


@dataclass
class ProjectState:
    """What the service holds for one project (rebuildable from Kafka + MLflow)."""

    project_id: str
    labeled: LabeledSet
    trigger: RetrainTrigger
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards `trigger`


class RetrainingService:
    """Handles `labels` and `annotations` batches and runs trainings in a worker thread."""

    def __init__(
        self,
        settings: RetrainingSettings,
        projects: ProjectStore,
        registry: Registry,
        lifecycle: ModelLifecycle,
        trainer: Trainer,
        answers: AnswerLedger,
        prior: ZeroShotPrior | None = None,
    ) -> None:
        self.settings = settings
        self.prior = prior  # the zero-shot prior for projects without a champion (None: off)
        self._priors = PriorScan(settings.failure_backoff_seconds)
        self.projects = projects
        self.registry = registry
        self.lifecycle = lifecycle
        self.trainer = trainer
        self.answers = answers
        self._archived = ArchivedScan()
        self.policy = TriggerPolicy(
            first_model_labels=settings.first_model_labels,
            min_classes=settings.min_classes,
            retrain_every_labels=settings.retrain_every_labels,
            retrain_growth=settings.retrain_growth,
            retrain_every_seconds=settings.retrain_every_seconds,
            failure_backoff_seconds=settings.failure_backoff_seconds,
        )
        self.states: dict[str, ProjectState] = {}
        self._states_lock = threading.Lock()
        self.positions: dict[int, int] = {}  # labels partition -> highest offset handled
        self._positions_lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="training")
        self._worker_lock = threading.Lock()  # guards the two fields below
        self._training_project: str | None = None  # the project the worker trains now
        self._closed = False

    # -- state ------------------------------------------------------------------------------
    def state(self, project_id: str) -> ProjectState:
        """The project's state, created on first use with the trigger resumed from the champion
        (the number of human labels it was trained on)."""
        with self._states_lock:
            existing = self.states.get(project_id)
        if existing is not None:
            return existing
        champion = self.registry.by_alias(project_id, CHAMPION)
        in_model = int(champion.tags.get("human_labels", "0")) if champion else None
        state = ProjectState(
            project_id,
            LabeledSet(self.settings.holdout_fraction),
            RetrainTrigger(self.policy, labels_in_model=in_model),
        )
        with self._states_lock:
            return self.states.setdefault(project_id, state)

    def rebuild(self) -> int:
        """Replay the compacted labels topic into the labeled sets; reconcile every project's
        model repository with its champion. Returns the human labels loaded (audits' included)."""
        loaded = 0
        for label in replay(self.settings.kafka_bootstrap, self.settings.topic_prefix, LABELS):
            state = self.state(label.ingested.item.project_id)
            added = state.labeled.apply(label)
            if added is not None:
                state.trigger.record_labels([added])
                loaded += 1
        # Audits' consensus lives in `annotations` (an audited item's final label is the model's).
        for annotation in replay(self.settings.kafka_bootstrap, self.settings.topic_prefix, ANNOTATIONS):
            self.state(annotation.project_id).labeled.apply_answer(annotation)
            if annotation.reason == events_pb2.TASK_REASON_REVIEW:
                self.state(annotation.project_id).labeled.apply_review(annotation)
            if annotation.reason == events_pb2.TASK_REASON_AUDIT:
                state = self.state(annotation.project_id)
                added = state.labeled.apply_audit(annotation)  # a label list joined for multi-label
                if added is not None:
                    state.trigger.record_labels([added])
                    loaded += 1
        for project in self.projects.list():
            metrics.TARGET_PRECISION.labels(project.spec.project_id).set(project.spec.target_precision)
            self.lifecycle.reconcile(project.spec.project_id, project.spec.model_name)
        log.info("rebuilt %d human labels of %d projects", loaded, len(self.states))
        return loaded

    # -- the consume loop -------------------------------------------------------------------
    def handle(self, batch: Batch) -> None:
        """Record human labels and people's answers to the serving model's tasks; move the
        thresholds those answers call for; start the trainings that are due. Idempotent under
        redelivery."""
        answered: set[str] = set()
        for event in batch.events:
            if event.topic is LABELS:
                label: events_pb2.LabelFinalized = event.message
                state = self.state(label.ingested.item.project_id)
                added = state.labeled.apply(label)
                with self._positions_lock:
                    self.positions[event.partition] = max(
                        self.positions.get(event.partition, -1), event.offset
                    )
                if added is not None:
                    with state.lock:
                        state.trigger.record_labels([added])
            elif event.topic is ANNOTATIONS:
                annotation: events_pb2.AnnotationSubmitted = event.message
                state = self.state(annotation.project_id)
                state.labeled.apply_answer(annotation)
                state.labeled.apply_review(annotation)
                added = state.labeled.apply_audit(annotation)
                if added is not None:
                    with state.lock:
                        state.trigger.record_labels([added])
                label_set = label_set_answer_of(annotation)
                if label_set is not None:  # multi-label: every label's probability kept
                    self.answers.record_label_set(annotation.project_id, annotation.item_id, label_set)
                    if label_set.audit:
                        served = self.lifecycle.current_threshold(annotation.project_id)
                        verdict = "agree" if label_set.agrees(served) else "disagree"
                        metrics.AUDITS.labels(annotation.project_id, verdict).inc()
                    answered.add(annotation.project_id)
                    continue
                answer = answer_of(annotation)
                if answer is None:
                    continue
                answer = self._with_label_probability(state, annotation, answer)
                self.answers.record(annotation.project_id, annotation.item_id, answer)
                if answer.audit:
                    verdict = "agree" if answer.correct else "disagree"
                    metrics.AUDITS.labels(annotation.project_id, verdict).inc()
                answered.add(annotation.project_id)
        for project_id in sorted(answered):
            self.lifecycle.move_threshold(project_id, batch)
        self.schedule()

    def _with_label_probability(
        self, state: ProjectState, annotation: events_pb2.AnnotationSubmitted, answer: Answer
    ) -> Answer:
        """`answer` with the probability that people's label is right (core/consensus_noise.py): 1 in a
        project with one annotator per task, and when the project is gone."""
        if state.labeled.pairs_of_answers() == 0:
            return answer
        try:
            n_classes = len(self.projects.get(annotation.project_id).spec.labels)
        except NotFound:
            return answer
        probability = state.labeled.label_probability(
            annotation.item_id, joined(annotation.consensus_labels), n_classes
        )
        return replace(answer, label_probability=probability)

    def schedule(self) -> None:
        """Start the zero-shot prior of new text projects and, when the worker is free, the most
        urgent due training (called after each batch and when idle)."""
        for project in self._archived.due(self.projects):
            self.executor.submit(self._retire, project)
        if self.prior is not None:
            for pid in self._priors.due(self.projects):
                if pid not in self._archived.archived:
                    self.executor.submit(self._serve_prior, pid)
        self._start_next()

    def _retire(self, project: common_pb2.Project) -> None:
        """In the worker (never beside a training): take an archived project's model out."""
        try:
            self.lifecycle.retire(project.spec.project_id, project.spec.model_name)
        except Exception:
            log.exception(
                "%s: retiring the archived project's model failed; retrying", project.spec.project_id
            )
            self._archived.failed(project.spec.project_id)

    def _start_next(self) -> None:
        """If no training runs: start the due training that `triggers.urgency` sorts first."""
        with self._worker_lock:
            if self._closed or self._training_project is not None:
                return
            with self._states_lock:
                states = list(self.states.values())
            due: list[tuple[tuple[int, float], str, ProjectState]] = []
            for state in states:
                if state.project_id in self._archived.archived:
                    continue  # an archived project trains nothing
                with state.lock:
                    reason = state.trigger.due()
                    if reason is not None:
                        key = urgency(reason, state.trigger.new_labels, state.trigger.labels_due)
                        due.append((key, state.project_id, state))
            if not due:
                return
            _, _, state = min(due, key=lambda x: (x[0], x[1]))
            with state.lock:
                try:
                    ticket = state.trigger.start()
                except NotDueError:  # cannot happen (trainings start under this lock only); never crash
                    return
                snapshot = state.labeled.snapshot()
            self._training_project = state.project_id
            waiting = len(due) - 1
            log.info(
                "%s: training (%s) on %d human labels%s",
                state.project_id,
                ticket.reason,
                snapshot.size,
                f"; {waiting} more due after it" if waiting else "",
            )
            # Under the lock: `close` cannot shut the executor down between the start and this.
            self.executor.submit(self._training, state, ticket, snapshot)

    def _serve_prior(self, pid: str) -> None:
        """In the worker: serve `pid`'s zero-shot prior unless it has a champion by now; the
        trigger then counts from the prior's 0 human labels."""
        assert self.prior is not None
        try:
            served = self.trainer.serve_prior(pid, self.prior)
        except Exception:
            log.exception("%s: the zero-shot prior failed; retrying later", pid)
            self._priors.failed(pid)
            return
        if served:
            state = self.state(pid)
            with state.lock:
                state.trigger.model_served(0)

    def _label_offsets(self) -> str:
        """The labels-topic offsets handled so far (JSON partition -> offset): the data version
        a training saw (labels replayed at start are not counted here)."""
        with self._positions_lock:
            return json.dumps(dict(sorted(self.positions.items())))

    def close(self) -> None:
        """Start no more trainings, cancel what is queued and wait for the one running."""
        with self._worker_lock:
            self._closed = True
        self.executor.shutdown(wait=True, cancel_futures=True)

    # -- training -----------------------------------------------------------------------------
    def _training(self, state: ProjectState, ticket: TrainingTicket, snapshot: Snapshot) -> None:
        succeeded = False
        family_name = "none"
        started = time.perf_counter()
        try:
            family_name = self.trainer.train(
                state.project_id, state.labeled, ticket, snapshot, self._label_offsets()
            )
            succeeded = True
        except Exception as exc:
            log.exception("%s: training failed", state.project_id)
            metrics.TRAININGS.labels(state.project_id, family_name, "failed").inc()
            try:
                project = self.projects.get(state.project_id)
                announce(
                    self.trainer.producer,
                    model_event(
                        state.project_id,
                        events_pb2.MODEL_EVENT_KIND_TRAINING_FAILED,
                        project.spec.model_name,
                        0,
                        reason=f"{type(exc).__name__}: {exc}",
                    ),
                )
            except Exception:
                log.exception("%s: could not announce the failure", state.project_id)
        else:
            metrics.TRAININGS.labels(state.project_id, family_name, "ok").inc()
            metrics.TRAINING_SECONDS.labels(state.project_id, family_name).observe(
                time.perf_counter() - started
            )
        finally:
            with state.lock:
                state.trigger.finish(ticket, succeeded)
            with self._worker_lock:
                self._training_project = None
        try:
            self._start_next()  # the next due training starts now, not at the next batch
        except Exception:  # the consume loop's next batch or idle call starts it then
            log.exception("could not start the next training")

    def is_training(self, pid: str) -> bool:
        """True while a training of `pid` runs or is due to start."""
        state = self.state(pid)
        with state.lock:
            return state.trigger.running is not None or state.trigger.due() is not None

    def request_retrain(self, pid: str) -> tuple[int, bool]:
        """Ask for a training of `pid`; returns (human labels held, whether one is running)."""
        if is_archived(self.projects.get(pid, fresh=True)):  # NotFound for an unknown project
            raise FailedPrecondition(f"project {pid!r} is archived: it trains no model")
        state = self.state(pid)
        with state.lock:
            state.trigger.request()
            return len(state.labeled), state.trigger.running is not None
