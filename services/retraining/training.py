"""One training of one project: fit every model family on the human labels, calibrate each as
it would serve, choose, check the labels, log and register in MLflow, and gate against the
champion. What serves afterwards is the lifecycle's decision (`lifecycle.ModelLifecycle`), never
this module's: `Trainer` hands it the gate's decision and the version.

Runs in the retraining service's worker thread (one training at a time), on a snapshot of the
project's labeled set taken by the consume loop.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.core import metrics
from labelloop.core.errors import DependencyUnavailable, FailedPrecondition
from labelloop.core.projects import ProjectStore, is_multi_label
from labelloop.core.stream import EventProducer
from labelloop.core.thresholds import Threshold
from labelloop.core.topics import TASKS, item_key
from labelloop.retraining.calibration import Calibration, exploration_rate
from labelloop.retraining.dataset import LabeledSet, Snapshot
from labelloop.retraining.deploy import served_labels, triton_predict
from labelloop.retraining.evaluation import (
    GateDecision,
    best_candidate,
    calibrate,
    calibrate_rescores,
    evaluate,
    gate,
    out_of_fold_probs,
)
from labelloop.retraining.families import ModelFamily, TrainedModel, families_for
from labelloop.retraining.family_schedule import FamilySchedule, ScheduleRule
from labelloop.retraining.label_checks import HUMAN, LabelIssues, find_issues, review_tasks
from labelloop.retraining.lifecycle import ModelLifecycle
from labelloop.retraining.model_events import announce, model_event
from labelloop.retraining.multilabel import train_multi_label
from labelloop.retraining.posterior import PosteriorCalibration
from labelloop.retraining.registry import CHAMPION, Registry, VersionRecord
from labelloop.retraining.reviews import ReviewLedger
from labelloop.retraining.settings import RetrainingSettings
from labelloop.retraining.triggers import TrainingTicket
from labelloop.retraining.zero_shot import FAMILY_NAME as PRIOR_FAMILY
from labelloop.retraining.zero_shot import ZeroShotPrior, is_prior
from labelloop.v1 import common_pb2, events_pb2

__all__ = ["Candidate", "Trainer"]

log = logging.getLogger("retraining.training")


@dataclass
class Candidate:
    """One family's model fitted on a training split, with its held-out metrics."""

    family: ModelFamily
    model: TrainedModel
    metrics: dict[str, float]
    holdout_probs: np.ndarray
    fit_s: float


class Trainer:
    """Trains, calibrates, checks, registers and gates; the lifecycle serves."""

    def __init__(
        self,
        settings: RetrainingSettings,
        projects: ProjectStore,
        registry: Registry,
        lifecycle: ModelLifecycle,
        producer: EventProducer,
        families: list[ModelFamily],
        embed: Callable[[list[str]], np.ndarray] | None = None,
        posterior: PosteriorCalibration | None = None,
        reviews: ReviewLedger | None = None,
    ) -> None:
        if not families:
            raise ValueError("no model family available")
        self.settings = settings
        self.projects = projects
        self.registry = registry
        self.lifecycle = lifecycle
        self.producer = producer  # review tasks and TRAINED events (outside the loop's transaction)
        self.families = families
        self.embed = embed  # texts -> shared-encoder embeddings (the store's), for cascade champions
        self.posterior = posterior  # thresholds on the label model's posterior (retraining/posterior.py)
        self.reviews = reviews  # items sent for review, across restarts (retraining/reviews.py)
        # Which families each project's next training fits (retraining/family_schedule.py).
        self.schedule = FamilySchedule(
            ScheduleRule(
                settings.family_schedule_close,
                settings.family_schedule_growth,
                settings.family_schedule_max_growth,
            )
        )

    def train(
        self, pid: str, labeled: LabeledSet, ticket: TrainingTicket, snapshot: Snapshot, label_offsets: str
    ) -> str:
        """One training of `pid` on `snapshot` (taken from `labeled`): fit the families the
        schedule holds due (retraining/family_schedule.py: all of them but those that lost at
        an earlier training and wait for more labels), keep the one whose calibrated threshold
        admits the most, check the labels, log and register in MLflow, gate against the
        champion, and hand the outcome to the lifecycle. Returns the family. `label_offsets`:
        the labels-topic offsets handled so far (the data version)."""
        project = self.projects.get(pid)
        label_set = [str(x) for x in project.spec.labels]
        target = project.spec.target_precision
        metrics.TARGET_PRECISION.labels(pid).set(target)
        if is_multi_label(project):
            return train_multi_label(self, pid, ticket, snapshot, label_offsets)
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
        due = set(self.schedule.due(pid, [f.name for f in families], snapshot.size))
        skipped = [f.name for f in families if f.name not in due]
        families = [f for f in families if f.name in due]
        if skipped:
            log.info("%s: not fitting %s (lost clearly at an earlier training)", pid, ", ".join(skipped))
        # The champion is scored first: it is the one step that needs Triton, so a champion that
        # is not served there fails the training before the fits, not after minutes of them.
        champion = self.registry.by_alias(pid, CHAMPION)
        replaces_prior = champion is not None and is_prior(champion.tags.get("family"))
        champion_metrics = (
            None
            if replaces_prior
            else self._champion_metrics(champion, model_name, hold_texts, hold_labels, label_set, target)
        )
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
            for c, (cal, _, _, _, _) in zip(candidates, calibrated, strict=True):
                c.metrics["calibrated_coverage"] = cal.expected_coverage
            self.schedule.record(
                pid, snapshot.size, {c.family.name: c.metrics["calibrated_coverage"] for c in candidates}
            )
            chosen = best_candidate([c.metrics for c in candidates], "calibrated_coverage", metric)
            best, (calib, oof, valid, sources_min_judged, rescores) = candidates[chosen], calibrated[chosen]
            issues = self._check_labels(pid, labeled, snapshot, oof, valid, best.holdout_probs, label_set)
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
                explored_labels=snapshot.explored,
                rescore_threshold=rescores.threshold,
                rescore_class_thresholds=dict(rescores.class_thresholds),
            )
            if replaces_prior:
                # The zero-shot prior is never compared (zero_shot.py): a trained model replaces it.
                decision = GateDecision(True, "replaces the zero-shot prior (never compared)")
            else:
                decision = gate(
                    best.metrics,
                    champion_metrics,
                    metric,
                    self.settings.gate_margin,
                    candidate_admits=threshold.admits_any(),
                    champion_admits=champion is not None
                    and self.lifecycle.current_threshold(pid).admits_any(),
                )
            params: dict[str, Any] = {
                "family": best.family.name,
                "families_tried": ",".join(c.family.name for c in candidates),
                "families_skipped": ",".join(skipped),
                "trigger": str(ticket.reason),
                "human_labels": snapshot.size,
                "train_size": len(snapshot.train),
                "holdout_size": len(snapshot.holdout),
                "holdout_fraction": self.settings.holdout_fraction,
                "target_precision": target,
                "label_set": ",".join(label_set),
                "dataset_fingerprint": snapshot.fingerprint(),
                "label_offsets": label_offsets,
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
                        "threshold": json.dumps(threshold.to_record()),
                        "metrics": json.dumps(best.metrics),
                        "dataset_fingerprint": snapshot.fingerprint(),
                        "decision": "",
                    },
                )
                announce(
                    self.producer,
                    model_event(
                        pid,
                        events_pb2.MODEL_EVENT_KIND_TRAINED,
                        model_name,
                        0,
                        run_id=run_id,
                        family=best.family.name,
                        metrics=best.metrics,
                        threshold=threshold,
                    ),
                )
                log.info(
                    "%s: registered version %d (%s) %s; gate: %s",
                    pid,
                    version,
                    best.family.name,
                    _fmt(best.metrics),
                    decision.reason,
                )
                served = self.lifecycle.apply_gate(
                    pid,
                    model_name,
                    version,
                    run_id,
                    best.family.name,
                    best.metrics,
                    decision,
                    threshold,
                    version_dir,
                )
                if served:
                    # From the label that triggered the training (same batch) to the version serving.
                    serving_s = time.monotonic() - ticket.started_at
                    self.registry.log(run_id, {}, {"seconds_to_serving": serving_s})
                    log.info("%s: version %d serving %.1fs after its trigger", pid, version, serving_s)
        return best.family.name

    def serve_prior(self, pid: str, prior: ZeroShotPrior) -> bool:
        """Build the zero-shot prior of `pid` (retraining/zero_shot.py), log and register it in
        MLflow (family `zero-shot`, `human_labels` 0) and hand it to the lifecycle to serve with
        the threshold that admits nothing and exploration 0. Does nothing (False) when the
        project already has a champion or is not a text project. True when the prior serves."""
        project = self.projects.get(pid)
        if project.spec.modality != common_pb2.MODALITY_TEXT:
            return False
        if self.registry.by_alias(pid, CHAMPION) is not None:
            return False
        label_set = [str(x) for x in project.spec.labels]
        model = prior.build(label_set, dict(project.spec.label_descriptions))
        model_name = project.spec.model_name
        threshold = Threshold(exploration_rate=0.0, prior=True)  # admits nothing until answers confirm it
        decision = GateDecision(True, "zero-shot prior: no champion yet")
        tags = {"labelloop.project": pid, "labelloop.trigger": "zero_shot"}
        with self.registry.run(pid, tags) as run_id:
            params: dict[str, Any] = {
                **model.params,
                "human_labels": 0,
                "label_set": ",".join(label_set),
                "label_texts": " | ".join(model.label_texts),
                "target_precision": project.spec.target_precision,
            }
            self.registry.log(run_id, params, {"threshold": threshold.threshold})
            self.registry.client.set_tag(run_id, "labelloop.gate", "promote")
            self.registry.client.set_tag(run_id, "labelloop.gate_reason", decision.reason)
            with tempfile.TemporaryDirectory(prefix="labelloop-prior-") as tmp:
                version_dir = model.write_version(Path(tmp), model_name, 1)
                version = self.registry.register(
                    pid,
                    run_id,
                    version_dir,
                    {
                        "family": PRIOR_FAMILY,
                        "human_labels": "0",
                        "threshold": json.dumps(threshold.to_record()),
                        "metrics": "{}",
                        "decision": "",
                    },
                )
                log.info("%s: registered the zero-shot prior as version %d", pid, version)
                return self.lifecycle.apply_gate(
                    pid, model_name, version, run_id, PRIOR_FAMILY, {}, decision, threshold, version_dir
                )

    def _calibrate(
        self, candidate: Candidate, snapshot: Snapshot, label_set: list[str], target: float, pid: str = ""
    ) -> tuple[Calibration, np.ndarray, np.ndarray, int, Calibration]:
        """The thresholds of `candidate`'s family (calibration.py): out-of-fold probabilities on
        the training labels and the candidate's own on the held-out ones, each label weighted by
        the inverse of the probability routing gave it to people, turned into the label model's
        posterior when the project's other sources voted (retraining/posterior.py). With the
        out-of-fold probabilities and which rows have one (the label checks read them), and the
        `sources_min_judged` the thresholds were calibrated with (0: the model's probabilities),
        and the thresholds a rescored waiting task must also reach, calibrated on the same
        probabilities (evaluation.calibrate_rescores)."""
        train_texts = [x.text for x in snapshot.train]
        train_labels = [x.label for x in snapshot.train]
        image = getattr(candidate.family, "modality", "text") == "image"
        folds = self.settings.image_calibration_folds if image else self.settings.calibration_folds
        oof, valid = out_of_fold_probs(candidate.family, train_texts, train_labels, label_set, folds)
        hold_labels = [x.label for x in snapshot.holdout]
        probs = np.concatenate([oof[valid], candidate.holdout_probs]) if hold_labels else oof[valid]
        truth = [y for y, ok in zip(train_labels, valid, strict=True) if ok] + hold_labels
        # Each human label weighs 1 / the probability routing gave it to people (module doc of
        # calibration.py): the calibration sample then stands for the stream.
        weights = [x.weight for x, ok in zip(snapshot.train, valid, strict=True) if ok] + [
            x.weight for x in snapshot.holdout
        ]
        entries = [x for x, ok in zip(snapshot.train, valid, strict=True) if ok] + list(snapshot.holdout)
        # With k >= 2 noisy people per task, each label's probability of being right (None: no
        # correction, as with one annotator per task; core/consensus_noise.py).
        label_probability = snapshot.label_probabilities(entries, len(label_set))

        def calibrated(probabilities: np.ndarray) -> Calibration:
            return calibrate(
                probabilities,
                truth,
                label_set,
                target,
                self.settings.confidence_level,
                weights=weights,
                max_weight=self.settings.calibration_max_weight,
                label_probability=label_probability,
            )

        calibration = calibrated(probs)
        sources_min_judged = 0
        if self.posterior is not None:
            # The same sample as routing would see it on the label model's posterior; that
            # calibration serves only where it admits more than the model's own (both hold the
            # target on the same weighted sample: the choice is the family choice's, per source
            # set), since sources whose errors follow the model's sharpen the posterior on the
            # hard items and can leave its honest threshold stricter than the model's.
            sample = self.posterior.sample(pid, label_set, entries, probs)
            if sample.sources_min_judged:
                on_posterior = calibrated(sample.probabilities)
                chosen = on_posterior.expected_coverage > calibration.expected_coverage
                log.info(
                    "%s: %s on the posterior (%d of %d labels with trusted votes) admits %.3f, on the "
                    "model %.3f: %s",
                    pid,
                    candidate.family.name,
                    sample.with_votes,
                    len(entries),
                    on_posterior.expected_coverage,
                    calibration.expected_coverage,
                    "posterior" if chosen else "model",
                )
                if chosen:
                    calibration, sources_min_judged = on_posterior, sample.sources_min_judged
                    probs = sample.probabilities
        rescores = calibrate_rescores(
            probs,
            truth,
            label_set,
            target,
            self.settings.confidence_level,
            weights=weights,
            label_probability=label_probability,
        )
        if label_probability is not None:
            log.info(
                "%s: %s calibrated on noise-corrected scores (annotator accuracy from %d of %d "
                "agreeing pairs; mean label probability %.3f)",
                pid,
                candidate.family.name,
                snapshot.agreeing_pairs,
                snapshot.pairs,
                float(np.mean(label_probability)) if label_probability else 1.0,
            )
        return calibration, oof, valid, sources_min_judged, rescores

    def _check_labels(
        self,
        pid: str,
        labeled: LabeledSet,
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
                labeled.reviewed() | (self.reviews.sent(pid) if self.reviews else set()),
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
        labeled.mark_sent_for_review(sent)
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
        served = served_labels(self.lifecycle.repo, model_name, champion.triton_version)
        aligned = np.zeros((len(texts), len(label_set)))
        for j, label in enumerate(label_set):
            if label in served:
                aligned[:, j] = probs[:, served.index(label)]
        return evaluate(aligned, truth, label_set, target)


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in sorted(values.items()))
