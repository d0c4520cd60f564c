"""Multi-label training: the one-vs-rest TF-IDF family, its metrics, and one training of a
multi-label project (fit, calibrate per label, log and register in MLflow, gate, deploy).

The family is TF-IDF word 1-2-grams (as ``tfidf.py``) and one logistic regression per label
(``sklearn.multiclass.OneVsRestClassifier`` fit on the label indicator matrix): each label's
probability is its own sigmoid, not a share of a softmax, so an item may carry any subset. It is
served by the Triton python backend's "sklearn-multilabel" loader (``core/triton_model/model.py``).
When every training text is a numeric vector (numbers separated by spaces, all of one length,
as the built-in yeast dataset's items are), the TF-IDF step is replaced by reading the numbers
(``numpy.loadtxt``, so Triton needs nothing but numpy and scikit-learn) and standardising them.

Metrics on the held-out human labels, deciding each label at 0.5: ``exact_match`` (every label
right), ``hamming_loss`` (share of wrong label decisions), ``micro_f1``; the gate compares
``micro_f1`` with the champion's on the same held-out labels (``evaluation.gate``). Thresholds
come from ``calibration.calibrate_label_bounds`` on out-of-fold and held-out probabilities,
weighted as single-label calibration is.

Called by `training.Trainer.train` for projects whose task type is multi-label, from the
training worker thread (one training at a time); like the single-label training it registers the
version and hands the gate's decision to the lifecycle (`lifecycle.ModelLifecycle.apply_gate`),
which alone decides what serves and publishes the thresholds.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from labelloop.core import model_repository
from labelloop.core.errors import FailedPrecondition
from labelloop.core.thresholds import Threshold
from labelloop.retraining.calibration import (
    ADMIT_NOTHING,
    LabelBounds,
    calibrate_label_bounds,
    exploration_rate,
)
from labelloop.retraining.dataset import HumanLabel, Snapshot
from labelloop.retraining.deploy import served_labels, triton_predict
from labelloop.retraining.evaluation import gate
from labelloop.retraining.model_events import announce, model_event
from labelloop.retraining.registry import CHAMPION
from labelloop.v1 import events_pb2

if TYPE_CHECKING:
    from labelloop.retraining.training import Trainer
    from labelloop.retraining.triggers import TrainingTicket

__all__ = [
    "MULTI_LABEL_GATE_METRIC",
    "OvrFamily",
    "OvrModel",
    "indicator",
    "multi_label_metrics",
    "train_multi_label",
]

log = logging.getLogger("retraining.multilabel")

MULTI_LABEL_GATE_METRIC = "micro_f1"
MULTI_LABEL_FAMILY = "sklearn-multilabel"  # the Triton loader (core/triton_model/model.py)


def numeric_width(texts: Sequence[str]) -> int | None:
    """The common length (at least 2) when every text is a vector of numbers separated by spaces,
    else None."""
    width: int | None = None
    for text in texts:
        parts = text.split()
        try:
            [float(x) for x in parts]
        except ValueError:
            return None
        if len(parts) < 2 or (width is not None and len(parts) != width):
            return None
        width = len(parts)
    return width


def indicator(label_lists: Sequence[Sequence[str]], label_set: Sequence[str]) -> np.ndarray:
    """The (n, K) boolean matrix: row i, column j is True when item i carries label_set[j]."""
    out = np.zeros((len(label_lists), len(label_set)), dtype=bool)
    column = {label: j for j, label in enumerate(label_set)}
    for i, labels in enumerate(label_lists):
        for label in labels:
            if label not in column:
                raise ValueError(f"label {label!r} is not in the label set {list(label_set)}")
            out[i, column[label]] = True
    return out


def multi_label_metrics(probs: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """exact_match, hamming_loss and micro_f1 of `probs` (each label on at 0.5) against `truth`
    ((n, K) booleans), and n; only n (0) for no items."""
    if truth.shape[0] == 0:
        return {"n": 0.0}
    predicted = probs >= 0.5
    return {
        "exact_match": float(np.all(predicted == truth, axis=1).mean()),
        "hamming_loss": float((predicted != truth).mean()),
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "n": float(truth.shape[0]),
    }


@dataclass
class OvrModel:
    """A fitted TF-IDF + one-vs-rest logistic-regression pipeline; columns follow ``label_set``."""

    pipeline: Pipeline
    label_set: list[str]
    params: dict[str, Any]
    family: str = "tfidf-ovr"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Independent per-label probabilities, shape (len(texts), len(label_set))."""
        if not texts:
            return np.zeros((0, len(self.label_set)))
        return np.asarray(self.pipeline.predict_proba(list(texts)), dtype=np.float64)

    def write_version(self, repo: Path, model_name: str, version: int) -> Path:
        """Write as family "sklearn-multilabel" (pipeline.joblib) with the project's label set."""
        import joblib

        return model_repository.write_version(
            repo,
            model_name,
            version,
            MULTI_LABEL_FAMILY,
            self.label_set,
            lambda directory: joblib.dump(self.pipeline, directory / model_repository.SKLEARN_PIPELINE_FILE),
            artifacts={"pipeline": model_repository.SKLEARN_PIPELINE_FILE},
            metadata={"family": self.family, "params": self.params, "task_type": "multi-label"},
        )


@dataclass(frozen=True)
class OvrFamily:
    """TF-IDF (as the single-label family) + one logistic regression per label (liblinear: each
    is a binary problem on sparse features)."""

    name: str = "tfidf-ovr"
    c: float = 10.0
    max_features: int = 200_000
    min_df: int = 2
    min_df_from: int = 200
    vector_c: float = 1.0

    def fit(
        self, texts: Sequence[str], label_lists: Sequence[Sequence[str]], label_set: Sequence[str]
    ) -> OvrModel:
        """Fit on `texts` and their label lists (each a subset of `label_set`). A label on for
        every item or for none gets a constant probability (scikit-learn's constant predictor)."""
        if len(texts) != len(label_lists):
            raise ValueError(f"{len(texts)} texts but {len(label_lists)} label lists")
        if len(texts) < 2:
            raise ValueError("need at least two items to train")
        y = indicator(label_lists, label_set).astype(np.int64)
        min_df = self.min_df if len(texts) >= self.min_df_from else 1
        width = numeric_width(texts)
        features: list[tuple[str, Any]]
        if width is not None:
            features = [
                ("numbers", FunctionTransformer(np.loadtxt, kw_args={"ndmin": 2, "dtype": np.float64})),
                ("scale", StandardScaler()),
            ]
        else:
            features = [
                (
                    "tfidf",
                    TfidfVectorizer(
                        ngram_range=(1, 2),
                        sublinear_tf=True,
                        min_df=min_df,
                        max_features=self.max_features,
                        dtype=np.float32,
                    ),
                )
            ]
        c = self.vector_c if width is not None else self.c
        pipeline = Pipeline(
            [*features, ("ovr", OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear")))]
        )
        with warnings.catch_warnings():
            # a label present in all (or no) training items: a constant predictor, as intended
            warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
            warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
            pipeline.fit(list(texts), y)
        params: dict[str, Any] = {"classifier": "one-vs-rest logistic regression", "C": c}
        if width is not None:
            params.update({"features": "numeric vector, standardised", "width": width})
        else:
            params.update(
                {
                    "features": "tfidf word 1-2gram sublinear",
                    "max_features": self.max_features,
                    "min_df": min_df,
                    "vocabulary": len(pipeline.named_steps["tfidf"].vocabulary_),
                }
            )
        return OvrModel(pipeline=pipeline, label_set=[str(x) for x in label_set], params=params)


def out_of_fold(
    family: OvrFamily, entries: Sequence[HumanLabel], label_set: Sequence[str], folds: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label probabilities for each training item from a model that did not see it (k-fold).
    Returns (probs, valid); with fewer than 2 * folds items nothing is valid."""
    n = len(entries)
    probs = np.zeros((n, len(label_set)))
    valid = np.zeros(n, dtype=bool)
    k = min(folds, n // 2)
    if k < 2:
        return probs, valid
    texts = np.asarray([x.text for x in entries], dtype=object)
    for train_idx, test_idx in KFold(k, shuffle=True, random_state=seed).split(texts):
        model = family.fit(texts[train_idx].tolist(), [entries[i].labels for i in train_idx], label_set)
        probs[test_idx] = model.predict_proba(texts[test_idx].tolist())
        valid[test_idx] = True
    return probs, valid


def _calibrate(
    trainer: Trainer,
    family: OvrFamily,
    snapshot: Snapshot,
    holdout_probs: np.ndarray,
    label_set: list[str],
    target: float,
) -> LabelBounds:
    train = list(snapshot.train)
    oof, valid = out_of_fold(family, train, label_set, trainer.settings.calibration_folds)
    entries = [x for x, ok in zip(train, valid, strict=True) if ok] + list(snapshot.holdout)
    probs = np.concatenate([oof[valid], holdout_probs]) if snapshot.holdout else oof[valid]
    truth = indicator([x.labels for x in entries], label_set)
    weights = np.minimum([x.weight for x in entries], trainer.settings.calibration_max_weight)
    return calibrate_label_bounds(
        probs,
        truth,
        label_set,
        target,
        trainer.settings.confidence_level,
        weights=weights if entries else None,
    )


def _champion_metrics(
    trainer: Trainer,
    pid: str,
    model_name: str,
    texts: list[str],
    truth: np.ndarray,
    label_set: list[str],
) -> dict[str, float] | None:
    """The serving champion's metrics on the same held-out labels, asked of Triton."""
    champion = trainer.registry.by_alias(pid, CHAMPION)
    if champion is None or not champion.triton_version:
        return None
    if not texts:
        return {}
    probs = triton_predict(trainer.settings.triton_grpc_url, model_name, texts)
    served = served_labels(trainer.lifecycle.repo, model_name, champion.triton_version)
    aligned = np.zeros((len(texts), len(label_set)))
    for j, label in enumerate(label_set):
        if label in served:
            aligned[:, j] = probs[:, served.index(label)]
    return multi_label_metrics(aligned, truth)


def train_multi_label(
    trainer: Trainer, pid: str, ticket: TrainingTicket, snapshot: Snapshot, label_offsets: str
) -> str:
    """One training of a multi-label project (module doc). Returns the family name.
    `label_offsets`: the labels-topic offsets handled so far (the data version)."""
    project = trainer.projects.get(pid)
    label_set = [str(x) for x in project.spec.labels]
    target = project.spec.target_precision
    model_name = project.spec.model_name
    if len(snapshot.train) < 2:
        raise FailedPrecondition(f"training split of {pid!r} has fewer than two items")
    family = OvrFamily()
    train_texts = [x.text for x in snapshot.train]
    hold_texts = [x.text for x in snapshot.holdout]
    hold_truth = indicator([x.labels for x in snapshot.holdout], label_set)
    tags = {"labelloop.project": pid, "labelloop.trigger": str(ticket.reason)}
    with trainer.registry.run(pid, tags) as run_id:
        t0 = time.perf_counter()
        model = family.fit(train_texts, [x.labels for x in snapshot.train], label_set)
        fit_s = time.perf_counter() - t0
        holdout_probs = model.predict_proba(hold_texts)
        candidate_metrics = multi_label_metrics(holdout_probs, hold_truth)
        t0 = time.perf_counter()
        bounds = _calibrate(trainer, family, snapshot, holdout_probs, label_set, target)
        calibration_s = time.perf_counter() - t0
        candidate_metrics["calibrated_coverage"] = bounds.expected_coverage
        threshold = Threshold(
            ADMIT_NOTHING,
            {},
            exploration_rate=exploration_rate(
                snapshot.explored,
                trainer.settings.exploration_rate,
                trainer.settings.exploration_floor,
                trainer.settings.exploration_wanted,
            ),
            explored_labels=snapshot.explored,
            label_upper=dict(bounds.upper),
            label_lower=dict(bounds.lower),
        )
        champion_metrics = _champion_metrics(trainer, pid, model_name, hold_texts, hold_truth, label_set)
        decision = gate(
            candidate_metrics, champion_metrics, MULTI_LABEL_GATE_METRIC, trainer.settings.gate_margin
        )
        params: dict[str, Any] = {
            "family": family.name,
            "task_type": "multi-label",
            "trigger": str(ticket.reason),
            "human_labels": snapshot.size,
            "train_size": len(snapshot.train),
            "holdout_size": len(snapshot.holdout),
            "target_precision": target,
            "label_set": ",".join(label_set),
            "dataset_fingerprint": snapshot.fingerprint(),
            "label_offsets": label_offsets,
            "gate_metric": MULTI_LABEL_GATE_METRIC,
            "gate_margin": trainer.settings.gate_margin,
            **{f"hp.{k}": v for k, v in model.params.items()},
        }
        run_metrics: dict[str, float] = dict(candidate_metrics)
        run_metrics.update(
            {
                "fit_seconds": fit_s,
                "calibration_seconds": calibration_s,
                "calibration_items": float(bounds.n),
                "calibration_budget": -1.0 if bounds.budget is None else bounds.budget,
                "exploration_rate": threshold.exploration_rate,
                **{f"upper.{k}": v for k, v in bounds.upper.items()},
                **{f"lower.{k}": v for k, v in bounds.lower.items()},
            }
        )
        if bounds.precision_lower_bound is not None:
            run_metrics["calibrated_precision_lower_bound"] = bounds.precision_lower_bound
        if champion_metrics:
            run_metrics.update({f"champion.{k}": v for k, v in champion_metrics.items()})
        trainer.registry.log(run_id, params, run_metrics)
        trainer.registry.client.set_tag(run_id, "labelloop.gate", "promote" if decision.promote else "reject")
        trainer.registry.client.set_tag(run_id, "labelloop.gate_reason", decision.reason)
        with tempfile.TemporaryDirectory(prefix="labelloop-train-") as tmp:
            version_dir = model.write_version(Path(tmp), model_name, 1)
            version = trainer.registry.register(
                pid,
                run_id,
                version_dir,
                {
                    "family": family.name,
                    "human_labels": str(snapshot.size),
                    "threshold": json.dumps(threshold.to_record()),
                    "metrics": json.dumps(candidate_metrics),
                    "dataset_fingerprint": snapshot.fingerprint(),
                    "decision": "",
                },
            )
            announce(
                trainer.producer,
                model_event(
                    pid,
                    events_pb2.MODEL_EVENT_KIND_TRAINED,
                    model_name,
                    0,
                    run_id=run_id,
                    family=family.name,
                    metrics=candidate_metrics,
                    threshold=threshold,
                ),
            )
            log.info(
                "%s: registered version %d (%s) on %d labels, %s, coverage %.3f; gate: %s",
                pid,
                version,
                family.name,
                snapshot.size,
                " ".join(f"{k}={v:.3f}" for k, v in sorted(candidate_metrics.items())),
                bounds.expected_coverage,
                decision.reason,
            )
            trainer.lifecycle.apply_gate(
                pid,
                model_name,
                version,
                run_id,
                family.name,
                candidate_metrics,
                decision,
                threshold,
                version_dir,
            )
    return family.name
