"""The model lifecycle: the one owner of what serves for each project, and under which
threshold.

`ModelLifecycle` is the only writer of a project's threshold (`core/thresholds.py`, read by
routing, ingest and the LLM source) and of its serving version (`core/progress.ServingVersions`,
read by the status APIs). Everything that changes either goes through it: a training's gate
decision (`apply_gate`), a person's `promote` or `rollback`, the moves people's answers call for
(`move_threshold`), and the start-up reconciliation after a crash (`reconcile`). A project's
model changes are serialized by its model lock, so a move never lands between a deployment's
threshold writes.

Order of a deployment (`_serve`), so that no half-written or unannounced version can serve
under a laxer threshold than its own:
1. publish the *stricter* of the current and the new threshold (per class), so that during the
   swap neither model is judged by a laxer threshold than its own;
2. `Deployer.install`: write the version into the model repository and wait until Triton serves
   it; on any failure restore the old threshold and re-raise;
3. record the serving version (Redis, metric), then publish the new threshold;
4. crown it in MLflow (champion alias and history) and announce DEPLOYED and PROMOTED (or
   ROLLED_BACK).
A crash at any step leaves at worst the stricter threshold and an unannounced version on disk,
which `reconcile` removes at the next start.

An archived project (core/projects.py) serves nothing: `retire` takes its model out of Triton and
the repository under both locks (so no deployment of it is half-done), and `_install` refuses to
serve a version of it, so neither a training that was running nor a person's promote brings the
model back.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from labelloop.core import metrics, model_repository
from labelloop.core.answers import AnswerLedger, AnswerSample, LabelSetSample
from labelloop.core.errors import DependencyUnavailable, FailedPrecondition, NotFound
from labelloop.core.model_repository import ModelLoadError
from labelloop.core.progress import ServingVersions
from labelloop.core.projects import ProjectStore, is_archived, is_multi_label
from labelloop.core.stream import Batch, EventProducer
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import MODELS
from labelloop.retraining.calibration import exploration_rate, move_label_bounds, move_threshold
from labelloop.retraining.deploy import Deployer, stricter
from labelloop.retraining.evaluation import GateDecision
from labelloop.retraining.model_events import announce, model_event
from labelloop.retraining.registry import CHALLENGER, CHAMPION, Registry, VersionRecord
from labelloop.retraining.settings import RetrainingSettings
from labelloop.v1 import events_pb2

__all__ = ["ModelLifecycle", "Promotion"]

log = logging.getLogger("retraining.lifecycle")

#: (registered version, Triton version, the threshold now in force) of a promote or rollback.
Promotion = tuple[int, int, Threshold]


class ModelLifecycle:
    """Decides what serves and under which threshold; the only writer of both."""

    def __init__(
        self,
        settings: RetrainingSettings,
        projects: ProjectStore,
        registry: Registry,
        deployer: Deployer,
        thresholds: ThresholdStore,
        serving: ServingVersions,
        answers: AnswerLedger,
        producer: EventProducer,
    ) -> None:
        self.settings = settings
        self.projects = projects
        self.registry = registry
        self.deployer = deployer
        self._thresholds = thresholds
        self._serving = serving
        self.answers = answers
        self.producer = producer
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- reads ------------------------------------------------------------------------------
    @property
    def repo(self) -> Path:
        """The model repository Triton serves from."""
        return self.deployer.repo

    def current_threshold(self, pid: str) -> Threshold:
        """The threshold routing applies now (read through, not cached)."""
        self._thresholds.invalidate(pid)
        return self._thresholds.get(pid)

    def serving_version(self, pid: str) -> int:
        """The Triton version serving `pid` (0: none)."""
        return self._serving.get(pid)

    def _lock(self, pid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(pid, threading.Lock())

    def _publish(self, pid: str, threshold: Threshold) -> None:
        self._thresholds.set(pid, threshold)
        metrics.THRESHOLD.labels(pid).set(threshold.threshold)

    # -- start-up ---------------------------------------------------------------------------
    def reconcile(self, pid: str, model_name: str) -> None:
        """After a crash: close abandoned MLflow runs, remove versions written but never
        announced (and restore the champion's threshold if one was), and record what Triton
        serves as the serving version. An archived project is left to `retire` (the service's
        scan), never loaded again."""
        if is_archived(self.projects.get(pid, fresh=True)):
            return
        with self._lock(pid):
            killed = self.registry.close_abandoned_runs(pid)
            champion = self.registry.by_alias(pid, CHAMPION)
            removed = self.deployer.reconcile(model_name, champion.triton_version if champion else 0)
            if removed:
                # The champion serves again, so its own threshold must apply (not the
                # unannounced version's).
                if champion is not None:
                    self._publish(pid, champion.serving_threshold(champion.triton_version))
                else:
                    self._publish(pid, Threshold())
            if killed or removed:
                log.warning(
                    "%s: after a crash: marked %d runs KILLED, removed unannounced versions %s",
                    pid,
                    killed,
                    removed,
                )
            if champion is None or not champion.triton_version:
                return
            try:
                url = self.settings.triton_grpc_url
                served = model_repository.served_versions(url, model_name)
                if not served and model_repository.list_versions(self.repo, model_name):
                    served = [model_repository.load_and_wait(url, model_name)]
            except (ModelLoadError, DependencyUnavailable) as exc:
                log.warning("%s: cannot check the served version: %s", pid, exc)
                return
            if served:
                self._serving.set(pid, served[-1])
                metrics.SERVING_MODEL_VERSION.labels(pid).set(served[-1])

    # -- archived projects ------------------------------------------------------------------
    def retire(self, pid: str, model_name: str) -> bool:
        """`pid` was archived: its model leaves Triton and the repository, nothing serves
        (serving version 0, a threshold admitting nothing), announced as RETIRED. True when
        there was a model to take out. Idempotent: a project retired before is left as it is."""
        with self._lock(pid), self.deployer.lock(model_name):
            had = model_repository.retire(self.repo, self.settings.triton_grpc_url, model_name)
            if not had and not self._serving.get(pid):
                return False  # retired before (each start of the service checks again)
            self._serving.set(pid, 0)
            metrics.SERVING_MODEL_VERSION.labels(pid).set(0)
            self._publish(pid, Threshold())
        announce(
            self.producer,
            model_event(
                pid, events_pb2.MODEL_EVENT_KIND_RETIRED, model_name, 0, reason="the project was archived"
            ),
        )
        log.info(
            "%s: archived; its model %s left Triton and the repository", pid, model_name if had else "(none)"
        )
        return had

    # -- people's answers -------------------------------------------------------------------
    def move_threshold(self, pid: str, batch: Batch) -> None:
        """Tighten or loosen the serving model's thresholds from people's answers to its tasks
        (calibration.move_threshold; for a multi-label project every label's pair, on exact match:
        calibration.move_label_bounds); emit THRESHOLD_UPDATED in `batch` when they move. The
        exploration rate falls as the answers to explored and audited items add to the labels
        the version was trained with."""
        try:
            project = self.projects.get(pid)
        except NotFound:
            return
        multi = is_multi_label(project)
        with self._lock(pid):
            current = self.current_threshold(pid)
            if current.model_version <= 0 or (multi and current.prior):
                return
            sample: AnswerSample | LabelSetSample
            if multi:
                sample = self.answers.label_set_sample(pid, current.model_version, project.spec.labels)
                agreeing, audits = sample.audits(current)
                audited = agreeing / audits if audits else 0.0
            else:
                sample = self.answers.sample(pid, current.model_version)
                audits, audited = sample.audits, sample.audited_precision()  # noise-corrected
            if audits:
                metrics.AUDITED_PRECISION.labels(pid).set(audited)
            # Exploration falls as the project's explored and audited labels grow, not only at the
            # next training: a version may serve thousands of items (calibration.exploration_rate).
            explored = current.explored_labels + int((sample.weights > 1.0).sum())
            rate = exploration_rate(
                explored,
                self.settings.exploration_rate,
                self.settings.exploration_floor,
                self.settings.exploration_wanted,
            )
            explores_less = rate < 0.9 * current.exploration_rate  # by a tenth at least: fewer writes
            if explores_less:
                log.info(
                    "%s: exploration %.4f -> %.4f (%d explored and audited labels)",
                    pid,
                    current.exploration_rate,
                    rate,
                    explored,
                )
                current = replace(current, exploration_rate=rate)
            answered = len(sample.weights)
            outcome = None
            if not current.awaits_answers(answered, int(self.settings.min_effective_answers)):
                target = project.spec.target_precision
                outcome = (
                    self._moved_pairs(current, sample, project.spec.labels, target)
                    if isinstance(sample, LabelSetSample)
                    else self._moved_thresholds(current, sample, target)
                )
            if outcome is None:
                if explores_less:
                    self._publish(pid, current)
                return
            moved, reason = replace(outcome[0], answers_at_move=answered), outcome[1]
            self._publish(pid, moved)
            log.warning("%s: %s", pid, reason)
            batch.emit(
                MODELS,
                pid,
                model_event(
                    pid,
                    events_pb2.MODEL_EVENT_KIND_THRESHOLD_UPDATED,
                    project.spec.model_name,
                    current.model_version,
                    threshold=moved,
                    reason=reason,
                ),
            )

    def _moved_thresholds(
        self, current: Threshold, sample: AnswerSample, target: float
    ) -> tuple[Threshold, str] | None:
        """The single-label thresholds after a move on `sample`, with why; None when kept."""
        move = move_threshold(
            current.threshold,
            sample.confidences,
            sample.scores(),  # right/wrong, noise-corrected with k noisy people (consensus_noise.py)
            target,
            weights=sample.weights,
            confidence_level=self.settings.move_confidence_level,
            min_effective=self.settings.min_effective_answers,
            item_thresholds=[current.for_label(x) for x in sample.predicted_labels],
        )
        if not move.moved:
            return None
        classes = {c: move.shift(t) for c, t in current.class_thresholds.items()}
        return replace(current, threshold=move.threshold, class_thresholds=classes), move.reason

    def _moved_pairs(
        self, current: Threshold, sample: LabelSetSample, labels: Sequence[str], target: float
    ) -> tuple[Threshold, str] | None:
        """A multi-label project's pairs after a move on `sample`, with why; None when kept."""
        move = move_label_bounds(
            current.label_upper,
            current.label_lower,
            sample.probabilities,
            sample.truth,
            labels,
            target,
            weights=sample.weights,
            confidence_level=self.settings.move_confidence_level,
            min_effective=self.settings.min_effective_answers,
        )
        if not move.moved:
            return None
        return replace(current, label_upper=move.upper, label_lower=move.lower), move.reason

    # -- a training's outcome ---------------------------------------------------------------
    def apply_gate(
        self,
        pid: str,
        model_name: str,
        version: int,
        run_id: str,
        family: str,
        run_metrics: dict[str, float],
        decision: GateDecision,
        threshold: Threshold,
        version_dir: Path,
    ) -> bool:
        """Record the gate's decision on registered `version`; serve it when the gate promotes.
        True when the version serves."""
        if not decision.promote:
            self.registry.tag(pid, version, {"decision": "rejected", "reason": decision.reason})
            self.registry.set_alias(pid, CHALLENGER, version)
            metrics.GATE_DECISIONS.labels(pid, "rejected").inc()
            announce(
                self.producer,
                model_event(
                    pid,
                    events_pb2.MODEL_EVENT_KIND_REJECTED,
                    model_name,
                    0,
                    run_id=run_id,
                    family=family,
                    metrics=run_metrics,
                    reason=decision.reason,
                ),
            )
            return False
        metrics.GATE_DECISIONS.labels(pid, "promoted").inc()
        with self._lock(pid):
            try:
                self._serve(pid, model_name, version, version_dir, threshold, decision.reason, rollback=False)
            except ModelLoadError:
                return False
        return True

    # -- people's decisions -----------------------------------------------------------------
    def promote(self, pid: str, version: int) -> Promotion:
        """Serve registered `version` as champion with its stored threshold.
        FailedPrecondition when it cannot load."""
        record = self.registry.get(pid, version)
        with self._lock(pid):
            try:
                tv = self._serve_registered(pid, record, "promoted by a person", rollback=False)
            except ModelLoadError as exc:
                raise FailedPrecondition(f"version {version} could not be loaded: {exc}") from exc
            return version, tv, self.current_threshold(pid)

    def rollback(self, pid: str) -> Promotion:
        """Re-serve the previous champion and its threshold."""
        with self._lock(pid):
            history = self.registry.champion_history(pid)
            if len(history) < 2:
                raise FailedPrecondition(f"project {pid!r} has no previous champion to roll back to")
            record = self.registry.get(pid, history[-2])
            try:
                tv = self._serve_registered(
                    pid, record, f"rolled back from version {history[-1]}", rollback=True
                )
            except ModelLoadError as exc:
                raise FailedPrecondition(f"version {record.version} could not be loaded: {exc}") from exc
            return record.version, tv, self.current_threshold(pid)

    # -- serving ----------------------------------------------------------------------------
    def _serve_registered(self, pid: str, record: VersionRecord, reason: str, *, rollback: bool) -> int:
        project = self.projects.get(pid)
        with tempfile.TemporaryDirectory(prefix="labelloop-deploy-") as tmp:
            source = self.registry.download(record, Path(tmp))
            return self._serve(
                pid,
                project.spec.model_name,
                record.version,
                source,
                record.serving_threshold(),
                reason,
                rollback=rollback,
            )

    def _serve(
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
        lock; the order is in the module's docstring). On a load failure tags the version,
        announces LOAD_FAILED and re-raises ModelLoadError."""
        record = self.registry.get(pid, version)
        try:
            triton_version = self._install(pid, model_name, version_dir, threshold)
        except ModelLoadError as exc:
            self.registry.tag(pid, version, {"decision": "load_failed", "reason": str(exc)[:4000]})
            announce(
                self.producer,
                model_event(
                    pid,
                    events_pb2.MODEL_EVENT_KIND_LOAD_FAILED,
                    model_name,
                    0,
                    run_id=record.run_id,
                    family=record.tags.get("family", ""),
                    reason=str(exc),
                ),
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
        common = {"run_id": record.run_id, "family": record.tags.get("family", ""), "metrics": record.metrics}
        announce(
            self.producer,
            model_event(pid, events_pb2.MODEL_EVENT_KIND_DEPLOYED, model_name, triton_version, **common),  # type: ignore[arg-type]
            model_event(
                pid,
                events_pb2.MODEL_EVENT_KIND_ROLLED_BACK if rollback else events_pb2.MODEL_EVENT_KIND_PROMOTED,
                model_name,
                triton_version,
                threshold=published,
                reason=reason,
                **common,  # type: ignore[arg-type]
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

    def _install(self, pid: str, model_name: str, version_dir: Path, threshold: Threshold) -> int:
        """Steps 1-3 of the module's docstring. Returns the Triton version. FailedPrecondition
        for an archived project (read fresh: it serves nothing from the moment it is archived)."""
        with self.deployer.lock(model_name):
            if is_archived(self.projects.get(pid, fresh=True)):
                raise FailedPrecondition(f"project {pid!r} is archived: none of its models is served")
            old = self.current_threshold(pid)
            self._publish(pid, stricter(old, threshold))
            try:
                version = self.deployer.install(model_name, version_dir)
            except BaseException:
                self._publish(pid, old)
                raise
            self._serving.set(pid, version)
            metrics.SERVING_MODEL_VERSION.labels(pid).set(version)
            # every field of the calibrated record (exploration, what it was calibrated on)
            self._publish(
                pid,
                replace(threshold, class_thresholds=dict(threshold.class_thresholds), model_version=version),
            )
            return version
