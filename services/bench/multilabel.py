"""`labelloop bench` on a multi-label dataset (records with `labels`, e.g. `--data yeast`): the
report's multi-label metrics and the reference policy extended to label lists.

The run is `loop.run_bench`'s (same stack, streaming window, simulated people as gRPC clients of
human-tasks; people are perfect here: they answer each item's hidden label list), on a project
created multi-label. The report, from the raw `labels` and `annotations` topics:

- ``human_fraction``: share of items whose final label came from people; ``human_effort``:
  people's answers (audits included) per item;
- over all final labels against the hidden ones: ``exact_match`` (every label right; reported
  as ``accuracy`` too, for the `make bench` table), ``hamming_loss`` (share of wrong label
  decisions), ``micro_f1``;
- over the auto-labels: ``auto_exact_precision`` (share exactly right; ``auto_accuracy`` in the
  table), ``auto_hamming_loss``, and their count.

**The reference policy, extended** (``reference.py`` for single-label streams; the same chunks,
first model, retraining rule, held-out fifth and seeds): the model is the one-vs-rest logistic
regression of Labelloop's multi-label family on the same features (TF-IDF for text, standardised
numbers for vector items); an item's confidence is its *least* confident label decision,
``min_j max(p_j, 1 - p_j)``, and it is correct when *every* label is (exact match); the
threshold is the lowest held-out confidence whose held-out items at or above it are at least
``target_precision`` exactly right (point estimate); auto-labeled items get every label with
``p_j >= 0.5``. With one label this is exactly the single-label reference on two classes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from labelloop.bench.reference import (
    CHUNK_SIZE,
    FIRST_MODEL_LABELS,
    HOLDOUT_SHARE,
    MIN_HOLDOUT,
    REFERENCE_SEEDS,
    retrain_interval,
)
from labelloop.bench.report import AnnotationCount
from labelloop.retraining.multilabel import OvrFamily, indicator
from labelloop.v1 import common_pb2, events_pb2

__all__ = [
    "is_multi_label_stream",
    "multi_label_reference",
    "multi_label_reference_seeds",
    "multi_label_summary",
]


def is_multi_label_stream(records: Sequence[Mapping[str, Any]]) -> bool:
    """True when the dataset's records carry label lists (a multi-label dataset)."""
    return bool(records) and "labels" in records[0]


def _scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(predicted & truth))
    fp = float(np.sum(predicted & ~truth))
    fn = float(np.sum(~predicted & truth))
    return {
        "exact_match": float(np.all(predicted == truth, axis=1).mean()),
        "hamming_loss": float((predicted != truth).mean()),
        "micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
    }


def multi_label_summary(
    order: Sequence[str],
    truth: Mapping[str, Sequence[str]],
    finals: Mapping[str, events_pb2.LabelFinalized],
    label_set: Sequence[str],
    annotations: AnnotationCount,
) -> dict[str, Any]:
    """The report's numbers (module doc) for the items of `order` that have a final label."""
    ids = [i for i in order if i in finals]
    n = len(ids)
    if n == 0:
        return {"items": len(order), "labeled": 0}
    predicted = indicator([list(finals[i].labels) for i in ids], label_set)
    hidden = indicator([list(truth[i]) for i in ids], label_set)
    auto = np.array([finals[i].source == common_pb2.LABEL_SOURCE_MODEL for i in ids])
    overall = _scores(predicted, hidden)
    out: dict[str, Any] = {
        "items": len(order),
        "labeled": n,
        "human_fraction": float(1.0 - auto.mean()),
        "human_effort": annotations.total / len(order),
        "auto_labels": int(auto.sum()),
        **overall,
        "accuracy": overall["exact_match"],
        "auto_exact_precision": None,
        "auto_accuracy": None,
        "auto_hamming_loss": None,
    }
    if auto.any():
        auto_scores = _scores(predicted[auto], hidden[auto])
        out.update(
            {
                "auto_exact_precision": auto_scores["exact_match"],
                "auto_accuracy": auto_scores["exact_match"],
                "auto_hamming_loss": auto_scores["hamming_loss"],
            }
        )
    return out


def _decision_confidence(probs: np.ndarray) -> np.ndarray:
    """Each item's least confident label decision: min_j max(p_j, 1 - p_j)."""
    return np.min(np.maximum(probs, 1.0 - probs), axis=1) if probs.size else np.zeros(len(probs))


def _lowest_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest confidence whose items at or above it are >= target correct; 2.0 for none."""
    order = np.argsort(-confidence, kind="stable")
    c, ok = confidence[order], correct[order]
    precision = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    last = np.flatnonzero(np.append(c[1:] != c[:-1], True))  # ties are admitted together
    reach = last[precision[last] >= target]
    return float(c[reach[-1]]) if reach.size else 2.0


def multi_label_reference(
    texts: Sequence[str],
    label_lists: Sequence[Sequence[str]],
    label_set: Sequence[str],
    target_precision: float = 0.95,
    seed: int = 0,
    family: OvrFamily | None = None,
) -> dict[str, Any]:
    """One run of the extended reference policy (module doc) on the stream; its summary."""
    family = family or OvrFamily()
    truth = indicator(label_lists, label_set)
    n = len(texts)
    rng = np.random.default_rng(seed)
    interval = retrain_interval(n)
    predicted = np.zeros_like(truth)
    by_people = np.zeros(n, dtype=bool)
    human: list[int] = []
    model: Any = None
    threshold = 2.0
    trained_at, retrains = 0, 0
    for start in range(0, n, CHUNK_SIZE):
        chunk = range(start, min(n, start + CHUNK_SIZE))
        if model is not None:
            probs = model.predict_proba([texts[i] for i in chunk])
            confident = _decision_confidence(probs) >= threshold
        else:
            probs, confident = None, np.zeros(len(chunk), dtype=bool)
        for k, i in enumerate(chunk):
            if confident[k] and probs is not None:
                predicted[i] = probs[k] >= 0.5
            else:
                predicted[i] = truth[i]
                by_people[i] = True
                human.append(i)
        due = len(human) >= FIRST_MODEL_LABELS if model is None else len(human) - trained_at >= interval
        if due:
            held = rng.permutation(len(human))[: max(MIN_HOLDOUT, round(len(human) * HOLDOUT_SHARE))]
            held_set = set(held.tolist())
            fit_rows = [human[j] for j in range(len(human)) if j not in held_set]
            held_rows = [human[j] for j in sorted(held_set)]
            part = family.fit(
                [texts[i] for i in fit_rows], [list(label_lists[i]) for i in fit_rows], label_set
            )
            held_probs = part.predict_proba([texts[i] for i in held_rows])
            correct = np.all((held_probs >= 0.5) == truth[held_rows], axis=1)
            threshold = _lowest_threshold(_decision_confidence(held_probs), correct, target_precision)
            model = family.fit([texts[i] for i in human], [list(label_lists[i]) for i in human], label_set)
            trained_at, retrains = len(human), retrains + 1
    auto = ~by_people
    overall = _scores(predicted.astype(bool), truth)
    auto_exact = float(np.all(predicted[auto] == truth[auto], axis=1).mean()) if auto.any() else None
    return {
        "seed": seed,
        "items": n,
        "human_fraction": float(by_people.mean()),
        "human_labels": int(by_people.sum()),
        "accuracy": overall["exact_match"],
        "hamming_loss": overall["hamming_loss"],
        "micro_f1": overall["micro_f1"],
        "auto_accuracy": auto_exact,
        "retrains": retrains,
    }


def multi_label_reference_seeds(
    texts: Sequence[str],
    label_lists: Sequence[Sequence[str]],
    label_set: Sequence[str],
    target_precision: float,
    seeds: Sequence[int] = REFERENCE_SEEDS,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """:func:`multi_label_reference` per seed: the mean of each number, the range of the shares."""
    started = time.perf_counter()
    runs = [multi_label_reference(texts, label_lists, label_set, target_precision, seed) for seed in seeds]
    out: dict[str, Any] = {"seeds": list(seeds), "runs": runs, "range": {}}
    for key in ("human_fraction", "accuracy", "hamming_loss", "micro_f1", "auto_accuracy", "retrains"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = statistics.fmean(values) if values else None
        if key in ("human_fraction", "accuracy", "auto_accuracy") and values:
            out["range"][key] = [min(values), max(values)]
    out["seconds"] = round(time.perf_counter() - started, 1)
    say(f"reference policy (multi-label, {len(seeds)} seeds): human_fraction {out['human_fraction']:.3f}")
    return out
