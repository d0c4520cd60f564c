"""The retraining service's logic: the human-labeled sets, the trigger per project, the
training worker, the gate, deployment, rollback, and threshold moves from people's answers.

Threads: the consume loop (`handle`, `schedule`) owns the labeled sets and triggers (guarded by
each project's lock); trainings run in one worker thread (one at a time on a small machine;
never two of one project, by the trigger's ticket); the gRPC API thread calls `promote`,
`rollback`, `request_retrain`, `list_models`. A project's model changes (promotion from a
training, promote, rollback) are serialized by the project's model lock.

State lives outside the process: labels in Kafka (replayed on start), models, metrics,
thresholds and the champion history in MLflow, thresholds and the answer sample in Redis, versions
in the model repository. See `deploy.py` for why no half-written or unannounced version can
serve.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.core import metrics, model_repository
from labelloop.core.answers import AnswerLedger, answer_of
from labelloop.core.errors import DependencyUnavailable, FailedPrecondition, NotFound
from labelloop.core.label_log import replay
from labelloop.core.model_repository import ModelLoadError
from labelloop.core.projects import ProjectStore
from labelloop.core.stream import Batch, EventProducer, now_timestamp
from labelloop.core.thresholds import Threshold
from labelloop.core.topics import ANNOTATIONS, LABELS, MODELS, TASKS, item_key
from labelloop.retraining.calibration import Calibration, exploration_rate, move_threshold
from labelloop.retraining.dataset import LabeledSet, Snapshot
from labelloop.retraining.deploy import Deployer, served_labels, triton_predict
from labelloop.retraining.evaluation import (
    GateDecision,
    best_candidate,
    calibrate,
    evaluate,
    gate,
    out_of_fold_probs,
)
from labelloop.retraining.families import ModelFamily, TrainedModel, families_for
from labelloop.retraining.label_checks import HUMAN, LabelIssues, find_issues, review_tasks
from labelloop.retraining.posterior import PosteriorCalibration
from labelloop.retraining.registry import CHALLENGER, CHAMPION, Registry, VersionRecord
from labelloop.retraining.reviews import ReviewLedger
from labelloop.retraining.settings import RetrainingSettings
from labelloop.retraining.triggers import RetrainTrigger, TrainingTicket, TriggerPolicy
from labelloop.v1 import events_pb2

__all__ = ["RetrainingService"]

log = logging.getLogger("retraining")


@dataclass
class ProjectState:
    """What the service holds for one project (rebuildable from Kafka + MLflow)."""

    project_id: str
    labeled: LabeledSet
    trigger: RetrainTrigger
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards `trigger`
    model_lock: threading.Lock = field(default_factory=threading.Lock)  # serializes model changes


@dataclass
class Candidate:
    family: ModelFamily
    model: TrainedModel
    metrics: dict[str, float]
    holdout_probs: np.ndarray
    fit_s: float


class RetrainingService:
    """Handles `labels` and `annotations` batches and runs trainings in a worker thread."""

    def __init__(
        self,
        settings: RetrainingSettings,
        projects: ProjectStore,
        deployer: Deployer,
        registry: Registry,
        producer: EventProducer,
        answers: AnswerLedger,
        families: list[ModelFamily],
        embed: Callable[[list[str]], np.ndarray] | None = None,
        posterior: PosteriorCalibration | None = None,
        reviews: ReviewLedger | None = None,
    ) -> None:
        if not families:
            raise ValueError("no model family available")
        self.settings = settings
        self.projects = projects
        self.deployer = deployer
        self.registry = registry
        self.producer = producer
        self.answers = answers
        self.families = families
        self.embed = embed  # texts -> shared-encoder embeddings (the store's), for cascade champions
        self.posterior = posterior  # thresholds on the label model's posterior (retraining/posterior.py)
        self.reviews = reviews  # items sent for review, across restarts (retraining/reviews.py)
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
            if annotation.reason == events_pb2.TASK_REASON_REVIEW:
                self.state(annotation.project_id).labeled.apply_review(annotation)
            if annotation.reason == events_pb2.TASK_REASON_AUDIT and annotation.consensus_labels:
                state = self.state(annotation.project_id)
                if state.labeled.apply_audit(annotation) is not None:
                    state.trigger.record_labels([annotation.consensus_labels[0]])
                    loaded += 1
        for project in self.projects.list():
            metrics.TARGET_PRECISION.labels(project.spec.project_id).set(project.spec.target_precision)
            self._reconcile(project.spec.project_id, project.spec.model_name)
        log.info("rebuilt %d human labels of %d projects", loaded, len(self.states))
        return loaded

    def _reconcile(self, project_id: str, model_name: str) -> None:
        killed = self.registry.close_abandoned_runs(project_id)
        champion = self.registry.by_alias(project_id, CHAMPION)
        removed = self.deployer.reconcile(model_name, champion.triton_version if champion else 0)
        if removed:
            # A crash after a version was served but before it was crowned: the champion serves
            # again, so its own threshold must apply (not the unannounced version's).
            if champion is not None:
                restored = champion.serving_threshold(champion.triton_version)
            else:
                restored = Threshold()
            self.deployer.thresholds.set(project_id, restored)
        if killed or removed:
            log.warning(
                "%s: after a crash: marked %d runs KILLED, removed unannounced versions %s",
                project_id,
                killed,
                removed,
            )
        if champion is not None and champion.triton_version:
            try:
                served = model_repository.served_versions(self.settings.triton_grpc_url, model_name)
                if not served and model_repository.list_versions(self.deployer.repo, model_name):
                    served = [model_repository.load_and_wait(self.settings.triton_grpc_url, model_name)]
            except (ModelLoadError, DependencyUnavailable) as exc:
                log.warning("%s: cannot check the served version: %s", project_id, exc)
                return
            if served:
                self.deployer.serving.set(project_id, served[-1])
                metrics.SERVING_MODEL_VERSION.labels(project_id).set(served[-1])

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
                state.labeled.apply_review(annotation)
                added = state.labeled.apply_audit(annotation)
                if added is not None:
                    with state.lock:
                        state.trigger.record_labels([added])
                answer = answer_of(annotation)
                if answer is None:
                    continue
                self.answers.record(annotation.project_id, annotation.item_id, answer)
                if answer.audit:
                    verdict = "agree" if answer.correct else "disagree"
                    metrics.AUDITS.labels(annotation.project_id, verdict).inc()
                answered.add(annotation.project_id)
        for project_id in sorted(answered):
            self._move_threshold(project_id, batch)
        self.schedule()

    def _move_threshold(self, project_id: str, batch: Batch) -> None:
        """Tighten or loosen the serving model's thresholds from people's answers to its tasks
        (calibration.move_threshold); publish THRESHOLD_UPDATED when they move."""
        try:
            project = self.projects.get(project_id)
        except NotFound:
            return
        state = self.state(project_id)
        with state.model_lock:
            current = self.deployer.current_threshold(project_id)
            if current.model_version <= 0:
                return
            sample = self.answers.sample(project_id, current.model_version)
            if sample.audits:
                metrics.AUDITED_PRECISION.labels(project_id).set(sample.audits_agreeing / sample.audits)
            move = move_threshold(
                current.threshold,
                sample.confidences,
                sample.correct,
                project.spec.target_precision,
                weights=sample.weights,
                confidence_level=self.settings.move_confidence_level,
                min_effective=self.settings.min_effective_answers,
            )
            if not move.moved:
                return
            moved = replace(
                current,
                threshold=move.threshold,
                class_thresholds={
                    c: move.shift(t, current.threshold) for c, t in current.class_thresholds.items()
                },
            )
            self.deployer.thresholds.set(project_id, moved)
            metrics.THRESHOLD.labels(project_id).set(moved.threshold)
            log.warning("%s: %s", project_id, move.reason)
            batch.emit(
                MODELS,
                project_id,
                self._event(
                    project_id,
                    events_pb2.MODEL_EVENT_KIND_THRESHOLD_UPDATED,
                    project.spec.model_name,
                    current.model_version,
                    threshold=moved,
                    reason=move.reason,
                ),
            )

    def schedule(self) -> None:
        """Start every training that is due (called after each batch and when idle)."""
        with self._states_lock:
            states = list(self.states.values())
        for state in states:
            with state.lock:
                if state.trigger.due() is None:
                    continue
                ticket = state.trigger.start()
                snapshot = state.labeled.snapshot()
            log.info("%s: training (%s) on %d human labels", state.project_id, ticket.reason, snapshot.size)
            self.executor.submit(self._training, state, ticket, snapshot)

    def _label_offsets(self) -> str:
        """The labels-topic offsets handled so far (JSON partition -> offset): the data version
        a training saw (labels replayed at start are not counted here)."""
        with self._positions_lock:
            return json.dumps(dict(sorted(self.positions.items())))

    def close(self) -> None:
        """Cancel queued trainings and wait for the one running."""
        self.executor.shutdown(wait=True, cancel_futures=True)

    # -- training -----------------------------------------------------------------------------
    def _training(self, state: ProjectState, ticket: TrainingTicket, snapshot: Snapshot) -> None:
        succeeded = False
        family_name = "none"
        started = time.perf_counter()
        try:
            family_name = self.train(state, ticket, snapshot)
            succeeded = True
        except Exception as exc:
            log.exception("%s: training failed", state.project_id)
            metrics.TRAININGS.labels(state.project_id, family_name, "failed").inc()
            try:
                project = self.projects.get(state.project_id)
                self._announce(
                    self._event(
                        state.project_id,
                        events_pb2.MODEL_EVENT_KIND_TRAINING_FAILED,
                        project.spec.model_name,
                        0,
                        reason=f"{type(exc).__name__}: {exc}",
                    )
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

    def train(self, state: ProjectState, ticket: TrainingTicket, snapshot: Snapshot) -> str:
        """One training: fit every family, keep the best on held-out labels, calibrate, log and
        register in MLflow, gate against the champion, deploy when promoted. Returns the family."""
        pid = state.project_id
        project = self.projects.get(pid)
        label_set = [str(x) for x in project.spec.labels]
        target = project.spec.target_precision
        metrics.TARGET_PRECISION.labels(pid).set(target)
        model_name = project.spec.model_name
        train_texts = [x.text for x in snapshot.train]
        train_labels = [x.label for x in snapshot.train]
        hold_texts = [x.text for x in snapshot.holdout]
        hold_labels = [x.label for x in snapshot.holdout]
        if len(set(train_labels)) < 2:
            raise FailedPrecondition(f"training split of {pid!r} has fewer than two classes")
        families = families_for(self.families, project.spec.modality)
        if not families:
            raise FailedPrecondition(f"no model family trains {pid!r}'s modality here")
        tags = {"labelloop.project": pid, "labelloop.trigger": str(ticket.reason)}
        with self.registry.run(pid, tags) as run_id:
            candidates = [
                self._fit(f, train_texts, train_labels, hold_texts, hold_labels, label_set, target)
                for f in families
            ]
            metric = self.settings.gate_metric
            # Each family is calibrated as it would serve (out-of-fold + held-out, weighted), and
            # the one whose calibrated threshold admits the most wins, then the gate metric: the
            # coverage at the target precision is what a family is for, and measured on all the
            # labels it is far less noisy than on the held-out fifth alone.
            t0 = time.perf_counter()
            calibrated = [self._calibrate(c, snapshot, label_set, target, pid) for c in candidates]
            calibration_s = time.perf_counter() - t0
            for c, (cal, _, _, _) in zip(candidates, calibrated, strict=True):
                c.metrics["calibrated_coverage"] = cal.expected_coverage
            chosen = best_candidate([c.metrics for c in candidates], "calibrated_coverage", metric)
            best, (calib, oof, valid, sources_min_judged) = candidates[chosen], calibrated[chosen]
            issues = self._check_labels(state, snapshot, oof, valid, best.holdout_probs, label_set)
            threshold = Threshold(
                calib.threshold,
                dict(calib.class_thresholds),
                exploration_rate=exploration_rate(
                    snapshot.explored,
                    self.settings.exploration_rate,
                    self.settings.exploration_floor,
                    self.settings.exploration_wanted,
                ),
                sources_min_judged=sources_min_judged,
            )
            champion = self.registry.by_alias(pid, CHAMPION)
            champion_metrics = self._champion_metrics(
                champion, model_name, hold_texts, hold_labels, label_set, target
            )
            decision = gate(best.metrics, champion_metrics, metric, self.settings.gate_margin)
            params: dict[str, Any] = {
                "family": best.family.name,
                "families_tried": ",".join(c.family.name for c in candidates),
                "trigger": str(ticket.reason),
                "human_labels": snapshot.size,
                "train_size": len(snapshot.train),
                "holdout_size": len(snapshot.holdout),
                "holdout_fraction": self.settings.holdout_fraction,
                "target_precision": target,
                "label_set": ",".join(label_set),
                "dataset_fingerprint": snapshot.fingerprint(),
                "label_offsets": self._label_offsets(),
                "gate_metric": metric,
                "gate_margin": self.settings.gate_margin,
                **{f"hp.{k}": v for k, v in best.model.params.items()},
                **{f"labels.{k}": v for k, v in sorted(snapshot.class_counts().items())},
            }
            run_metrics: dict[str, float] = {k: v for k, v in best.metrics.items()}
            for c in candidates:
                run_metrics.update({f"{c.family.name}.{k}": v for k, v in c.metrics.items()})
                run_metrics[f"{c.family.name}.fit_seconds"] = c.fit_s
            run_metrics.update(
                {
                    "threshold": calib.threshold,
                    "calibrated_coverage": calib.expected_coverage,
                    "calibration_items": float(calib.n),
                    "calibration_explored": float(snapshot.explored),
                    "exploration_rate": threshold.exploration_rate,
                    "calibration_seconds": calibration_s,
                    "calibration.sources_min_judged": float(sources_min_judged),
                }
            )
            if champion_metrics:
                run_metrics.update({f"champion.{k}": v for k, v in champion_metrics.items()})
            run_metrics.update(issues.counts())
            self.registry.log(run_id, params, run_metrics)
            self.registry.client.set_tag(
                run_id, "labelloop.gate", "promote" if decision.promote else "reject"
            )
            self.registry.client.set_tag(run_id, "labelloop.gate_reason", decision.reason)
            with tempfile.TemporaryDirectory(prefix="labelloop-train-") as tmp:
                version_dir = best.model.write_version(Path(tmp), model_name, 1)
                version = self.registry.register(
                    pid,
                    run_id,
                    version_dir,
                    {
                        "family": best.family.name,
                        "human_labels": str(snapshot.size),
                        "threshold": json.dumps(
                            {
                                "threshold": threshold.threshold,
                                "class_thresholds": threshold.class_thresholds,
                                "exploration_rate": threshold.exploration_rate,
                                "sources_min_judged": threshold.sources_min_judged,
                            }
                        ),
                        "metrics": json.dumps(best.metrics),
                        "dataset_fingerprint": snapshot.fingerprint(),
                        "decision": "",
                    },
                )
                self._announce(
                    self._event(
                        pid,
                        events_pb2.MODEL_EVENT_KIND_TRAINED,
                        model_name,
                        0,
                        run_id=run_id,
                        family=best.family.name,
                        metrics=best.metrics,
                        threshold=threshold,
                    )
                )
                log.info(
                    "%s: registered version %d (%s) %s; gate: %s",
                    pid,
                    version,
                    best.family.name,
                    _fmt(best.metrics),
                    decision.reason,
                )
                if self._apply_gate(pid, model_name, version, run_id, best, decision, threshold, version_dir):
                    # From the label that triggered the training (same batch) to the version serving.
                    serving_s = time.monotonic() - ticket.started_at
                    self.registry.log(run_id, {}, {"seconds_to_serving": serving_s})
                    log.info("%s: version %d serving %.1fs after its trigger", pid, version, serving_s)
        return best.family.name

    def _calibrate(
        self, candidate: Candidate, snapshot: Snapshot, label_set: list[str], target: float, pid: str = ""
    ) -> tuple[Calibration, np.ndarray, np.ndarray, int]:
        """The thresholds of `candidate`'s family (calibration.py): out-of-fold probabilities on
        the training labels and the candidate's own on the held-out ones, each label weighted by
        the inverse of the probability routing gave it to people, turned into the label model's
        posterior when the project's other sources voted (retraining/posterior.py). With the
        out-of-fold probabilities and which rows have one (the label checks read them), and the
        `sources_min_judged` the thresholds were calibrated with (0: the model's probabilities)."""
        train_texts = [x.text for x in snapshot.train]
        train_labels = [x.label for x in snapshot.train]
        oof, valid = out_of_fold_probs(
            candidate.family, train_texts, train_labels, label_set, self.settings.calibration_folds
        )
        hold_labels = [x.label for x in snapshot.holdout]
        probs = np.concatenate([oof[valid], candidate.holdout_probs]) if hold_labels else oof[valid]
        truth = [y for y, ok in zip(train_labels, valid, strict=True) if ok] + hold_labels
        # Each human label weighs 1 / the probability routing gave it to people (module doc of
        # calibration.py): the calibration sample then stands for the stream.
        weights = [x.weight for x, ok in zip(snapshot.train, valid, strict=True) if ok] + [
            x.weight for x in snapshot.holdout
        ]
        sources_min_judged = 0
        if self.posterior is not None:
            entries = [x for x, ok in zip(snapshot.train, valid, strict=True) if ok] + list(snapshot.holdout)
            sample = self.posterior.sample(pid, label_set, entries, probs)
            probs, sources_min_judged = sample.probabilities, sample.sources_min_judged
        calibration = calibrate(
            probs,
            truth,
            label_set,
            target,
            self.settings.confidence_level,
            weights=weights,
            max_weight=self.settings.calibration_max_weight,
        )
        return calibration, oof, valid, sources_min_judged

    def _check_labels(
        self,
        state: ProjectState,
        snapshot: Snapshot,
        oof: np.ndarray,
        valid: np.ndarray,
        holdout_probs: np.ndarray,
        label_set: list[str],
    ) -> LabelIssues:
        """The label checks (retraining/label_checks.py) on every human label, each scored by a
        model that did not see it (out-of-fold for training labels, the candidate for held-out
        ones); review tasks for the flagged ones not reviewed before; counts to Prometheus. Best
        effort: a failure (Kafka down for the review tasks) is logged and checks nothing."""
        pid = state.project_id
        entries = [*snapshot.train, *snapshot.holdout]
        probs = np.concatenate([oof, holdout_probs]) if snapshot.holdout else oof
        checked = np.concatenate([valid, np.ones(len(snapshot.holdout), dtype=bool)])
        try:
            issues = find_issues(
                [x.label for x in entries],
                probs,
                checked,
                [HUMAN] * len(entries),  # the labeled set holds people's labels only (audits' too)
                label_set,
                [x.item_id for x in entries],
                state.labeled.reviewed() | (self.reviews.sent(pid) if self.reviews else set()),
                self.settings.label_check_min_per_class,
                self.settings.label_check_max_given_share,
            )
            tasks = review_tasks(issues, entries)
            for task in tasks:
                self.producer.send(TASKS, item_key(pid, task.ingested.item.item_id), task)
            self.producer.flush()
        except Exception:  # the checks never stop a training; the next training checks again
            log.exception("%s: label checks failed; training without them", pid)
            return LabelIssues(0, (), (), ())
        sent = [t.ingested.item.item_id for t in tasks]
        state.labeled.mark_sent_for_review(sent)
        if self.reviews is not None:
            try:
                self.reviews.record(pid, sent)
            except DependencyUnavailable:  # Redis down: sent again after a restart at worst
                log.exception("%s: could not record the items sent for review", pid)
        metrics.LABEL_ISSUES.labels(pid, "human").inc(len(issues.flagged_human))
        metrics.LABEL_ISSUES.labels(pid, "auto").inc(len(issues.flagged_auto))
        metrics.LABEL_ISSUES.labels(pid, "reviews_sent").inc(len(tasks))
        log.info(
            "%s: label checks flagged %d of %d human labels; %d sent for review",
            pid,
            len(issues.flagged_human),
            issues.checked,
            len(tasks),
        )
        return issues

    def _fit(
        self,
        family: ModelFamily,
        texts: list[str],
        labels: list[str],
        hold_texts: list[str],
        hold_labels: list[str],
        label_set: list[str],
        target: float,
    ) -> Candidate:
        t0 = time.perf_counter()
        model = family.fit(texts, labels, label_set)
        fit_s = time.perf_counter() - t0
        probs = model.predict_proba(hold_texts) if hold_texts else np.zeros((0, len(label_set)))
        return Candidate(family, model, evaluate(probs, hold_labels, label_set, target), probs, fit_s)

    def _champion_metrics(
        self,
        champion: VersionRecord | None,
        model_name: str,
        texts: list[str],
        truth: list[str],
        label_set: list[str],
        target: float,
    ) -> dict[str, float] | None:
        """The serving champion's metrics on the same held-out labels, asked of Triton."""
        if champion is None or not champion.triton_version:
            return None
        if not truth:
            return {}
        probs = triton_predict(self.settings.triton_grpc_url, model_name, texts, embed=self.embed)
        served = served_labels(self.deployer.repo, model_name, champion.triton_version)
        aligned = np.zeros((len(texts), len(label_set)))
        for j, label in enumerate(label_set):
            if label in served:
                aligned[:, j] = probs[:, served.index(label)]
        return evaluate(aligned, truth, label_set, target)

    def _apply_gate(
        self,
        pid: str,
        model_name: str,
        version: int,
        run_id: str,
        best: Candidate,
        decision: GateDecision,
        threshold: Threshold,
        version_dir: Path,
    ) -> bool:
        """Record the gate's decision; deploy when it promotes. True when the version serves."""
        state = self.state(pid)
        if not decision.promote:
            self.registry.tag(pid, version, {"decision": "rejected", "reason": decision.reason})
            self.registry.set_alias(pid, CHALLENGER, version)
            metrics.GATE_DECISIONS.labels(pid, "rejected").inc()
            self._announce(
                self._event(
                    pid,
                    events_pb2.MODEL_EVENT_KIND_REJECTED,
                    model_name,
                    0,
                    run_id=run_id,
                    family=best.family.name,
                    metrics=best.metrics,
                    reason=decision.reason,
                )
            )
            return False
        metrics.GATE_DECISIONS.labels(pid, "promoted").inc()
        with state.model_lock:
            try:
                self._deploy(
                    pid, model_name, version, version_dir, threshold, decision.reason, rollback=False
                )
            except ModelLoadError:
                return False
        return True

    # -- deployment (training, promote, rollback) --------------------------------------------
    def _deploy(
        self,
        pid: str,
        model_name: str,
        version: int,
        version_dir: Path,
        threshold: Threshold,
        reason: str,
        *,
        rollback: bool,
    ) -> int:
        """Serve registered `version` from `version_dir` and crown it (caller holds the model
        lock). Announces DEPLOYED then PROMOTED/ROLLED_BACK; on a load failure tags the version,
        announces LOAD_FAILED and re-raises ModelLoadError."""
        record = self.registry.get(pid, version)
        try:
            triton_version = self.deployer.deploy(pid, model_name, version_dir, threshold)
        except ModelLoadError as exc:
            self.registry.tag(pid, version, {"decision": "load_failed", "reason": str(exc)[:4000]})
            self._announce(
                self._event(
                    pid,
                    events_pb2.MODEL_EVENT_KIND_LOAD_FAILED,
                    model_name,
                    0,
                    run_id=record.run_id,
                    family=record.tags.get("family", ""),
                    reason=str(exc),
                )
            )
            log.error("%s: version %d failed to load; the previous one keeps serving: %s", pid, version, exc)
            raise
        self.registry.tag(
            pid, version, {"triton_version": str(triton_version), "decision": "promoted", "reason": reason}
        )
        history = self.registry.champion_history(pid)
        history = history[:-1] if rollback else history
        if not history or history[-1] != version:
            history.append(version)
        self.registry.crown(pid, version, history)
        challenger = self.registry.by_alias(pid, CHALLENGER)
        if challenger is not None and challenger.version == version:
            self.registry.delete_alias(pid, CHALLENGER)
        self.answers.reset(pid)
        published = replace(
            threshold, class_thresholds=dict(threshold.class_thresholds), model_version=triton_version
        )
        family = record.tags.get("family", "")
        common = {"run_id": record.run_id, "family": family, "metrics": record.metrics}
        self._announce(
            self._event(pid, events_pb2.MODEL_EVENT_KIND_DEPLOYED, model_name, triton_version, **common),
            self._event(
                pid,
                events_pb2.MODEL_EVENT_KIND_ROLLED_BACK if rollback else events_pb2.MODEL_EVENT_KIND_PROMOTED,
                model_name,
                triton_version,
                threshold=published,
                reason=reason,
                **common,
            ),
        )
        log.info(
            "%s: version %d serves as Triton version %d, threshold %.4f",
            pid,
            version,
            triton_version,
            published.threshold,
        )
        return triton_version

    def _deploy_registered(self, pid: str, record: VersionRecord, reason: str, *, rollback: bool) -> int:
        project = self.projects.get(pid)
        threshold = record.serving_threshold()
        with tempfile.TemporaryDirectory(prefix="labelloop-deploy-") as tmp:
            source = self.registry.download(record, Path(tmp))
            return self._deploy(
                pid, project.spec.model_name, record.version, source, threshold, reason, rollback=rollback
            )

    def promote(self, pid: str, version: int) -> tuple[int, int, float]:
        """Serve registered `version` as champion with its stored threshold.
        Returns (version, triton version, threshold). FailedPrecondition when it cannot load."""
        state = self.state(pid)
        record = self.registry.get(pid, version)
        with state.model_lock:
            try:
                tv = self._deploy_registered(pid, record, "promoted by a person", rollback=False)
            except ModelLoadError as exc:
                raise FailedPrecondition(f"version {version} could not be loaded: {exc}") from exc
        return version, tv, record.threshold["threshold"]

    def rollback(self, pid: str) -> tuple[int, int, float]:
        """Re-serve the previous champion and its threshold."""
        state = self.state(pid)
        with state.model_lock:
            history = self.registry.champion_history(pid)
            if len(history) < 2:
                raise FailedPrecondition(f"project {pid!r} has no previous champion to roll back to")
            record = self.registry.get(pid, history[-2])
            try:
                tv = self._deploy_registered(
                    pid, record, f"rolled back from version {history[-1]}", rollback=True
                )
            except ModelLoadError as exc:
                raise FailedPrecondition(f"version {record.version} could not be loaded: {exc}") from exc
        return record.version, tv, record.threshold["threshold"]

    def is_training(self, pid: str) -> bool:
        """True while a training of `pid` runs or is due to start."""
        state = self.state(pid)
        with state.lock:
            return state.trigger.running is not None or state.trigger.due() is not None

    def request_retrain(self, pid: str) -> tuple[int, bool]:
        """Ask for a training of `pid`; returns (human labels held, whether one is running)."""
        self.projects.get(pid)  # NotFound for an unknown project
        state = self.state(pid)
        with state.lock:
            state.trigger.request()
            return len(state.labeled), state.trigger.running is not None

    # -- events ---------------------------------------------------------------------------
    def _event(
        self,
        pid: str,
        kind: int,
        model_name: str,
        version: int,
        *,
        run_id: str = "",
        family: str = "",
        metrics: dict[str, float] | None = None,
        threshold: Threshold | None = None,
        reason: str = "",
    ) -> events_pb2.ModelEvent:
        event = events_pb2.ModelEvent(
            project_id=pid,
            kind=kind,  # type: ignore[arg-type]
            model_name=model_name,
            model_version=version,
            family=family,
            mlflow_run_id=run_id,
            metrics=metrics or {},
            reason=reason,
            at=now_timestamp(),
        )
        if threshold is not None:
            event.threshold = threshold.threshold
            event.class_thresholds.update(threshold.class_thresholds)
        return event

    def _announce(self, *events: events_pb2.ModelEvent) -> None:
        for event in events:
            self.producer.send(MODELS, event.project_id, event)
        self.producer.flush()


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in sorted(values.items()))
