"""How a cascade should answer what its fast stage is unsure of: an offline study, no servers.

For a stream (a built-in dataset, optionally only the labels starting with a prefix, such as
``comp.`` for the five computer groups of 20 Newsgroups), ``labels`` items are drawn at random from
the first half (at most 1,500 items) and given their true labels, as perfect people would; each
family is then trained and calibrated as retraining does (:func:`evaluation.out_of_fold_probs`
with the service's folds, :func:`evaluation.calibrate` at its confidence level) and scored on the
second half (the items a served model would meet):

- ``accuracy``: of the top class, on the second half;
- ``oracle``: the largest share of the second half any one threshold admits at the target
  precision, measured on the second half itself (how good the ranking is, no calibration);
- ``coverage`` and ``precision``: what the calibrated thresholds admit there, and how right it is.

Families: ``tfidf-lr``; ``cascade-replace`` (the encoder head's answer alone below the bar, as
versions before 2026-12-02); ``cascade`` (the mean of both stages). Retraining trains both and
serves the one whose calibrated threshold admits more. Each cell is the mean over ``--draws`` random label sets.

CLI: ``python -m labelloop.bench.cascade_combine --data 20newsgroups --limit 3000 [--prefix comp.]``
(needs the encoder built by ``make setup``; minutes per stream on 2 cores). Never in timed tests.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.core.settings import load
from labelloop.datasets import labels_of
from labelloop.datasets import load as load_dataset
from labelloop.retraining.calibration import coverage_at_precision
from labelloop.retraining.cascade import CASCADE_FAMILY, CASCADE_REPLACE_FAMILY
from labelloop.retraining.evaluation import calibrate, out_of_fold_probs
from labelloop.retraining.settings import RetrainingSettings
from labelloop.retraining.tfidf import TFIDF_FAMILY

SIZES = (100, 200, 400, 800)
FAMILIES: dict[str, Any] = {
    "tfidf-lr": TFIDF_FAMILY,
    "cascade, replace": CASCADE_REPLACE_FAMILY,
    "cascade, mean": CASCADE_FAMILY,
}


def study(
    texts: Sequence[str],
    labels: Sequence[str],
    families: dict[str, Any] | None = None,
    sizes: Sequence[int] = SIZES,
    draws: int = 3,
    target: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (labels, family of ``families``, default :data:`FAMILIES`): the means over ``draws`` of accuracy, oracle, coverage and
    precision (None where nothing was admitted in any draw); see the module doc."""
    families = FAMILIES if families is None else families
    settings = load(RetrainingSettings)
    label_set = sorted(set(labels))
    truth = np.asarray(labels, dtype=object)
    half = min(1500, len(texts) // 2)
    test = list(range(half, len(texts)))
    test_texts = [texts[i] for i in test]
    rng = np.random.default_rng(seed)
    rows = []
    for size in [s for s in sizes if s <= half]:
        cells: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in families}
        for draw in range(draws):
            chosen = rng.choice(half, size, replace=False)
            train_texts = [texts[i] for i in chosen]
            train_labels = [str(truth[i]) for i in chosen]
            for name, family in families.items():
                oof, valid = out_of_fold_probs(
                    family, train_texts, train_labels, label_set, settings.calibration_folds, seed=draw
                )
                calibration = calibrate(
                    oof[valid],
                    [t for t, v in zip(train_labels, valid, strict=True) if v],
                    label_set,
                    target,
                    settings.confidence_level,
                )
                probs = family.fit(train_texts, train_labels, label_set).predict_proba(test_texts)
                predicted = np.asarray(label_set, dtype=object)[probs.argmax(axis=1)]
                right = predicted == truth[test]
                bar = np.array([calibration.threshold_for(str(p)) for p in predicted])
                admitted = probs.max(axis=1) >= bar
                cells[name].append(
                    (
                        float(right.mean()),
                        coverage_at_precision(probs.max(axis=1), right, target),
                        float(admitted.mean()),
                        float(right[admitted].mean()) if admitted.any() else float("nan"),
                    )
                )
        for name, values in cells.items():
            array = np.array(values)
            precisions = array[:, 3][~np.isnan(array[:, 3])]
            rows.append(
                {
                    "labels": size,
                    "family": name,
                    "accuracy": round(float(array[:, 0].mean()), 3),
                    "oracle": round(float(array[:, 1].mean()), 3),
                    "coverage": round(float(array[:, 2].mean()), 3),
                    "precision": round(float(precisions.mean()), 3) if len(precisions) else None,
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelloop.bench.cascade_combine", description=__doc__)
    parser.add_argument("--data", default="20newsgroups", help="a built-in dataset (text)")
    parser.add_argument("--limit", type=int, default=3000, help="items of the stream (after --prefix)")
    parser.add_argument("--prefix", default="", help="only items whose label starts with this")
    parser.add_argument("--draws", type=int, default=3, help="random label sets per size")
    parser.add_argument("--target", type=float, default=0.95, help="target precision")
    args = parser.parse_args(argv)
    records = [r for r in load_dataset(args.data) if str(r["label"]).startswith(args.prefix)][: args.limit]
    if any("media" in r for r in records) or len(labels_of(records)) < 2:
        print(f"{args.data}: needs a text stream with at least two labels", file=sys.stderr)
        return 2
    rows = study(
        [r["text"] for r in records], [r["label"] for r in records], draws=args.draws, target=args.target
    )
    name = args.data + (f" ({args.prefix}*)" if args.prefix else "")
    print(f"{name}, {len(records)} items, target {args.target}, mean of {args.draws} draws")
    print("| labels | family | accuracy | oracle | coverage | precision |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['labels']} | {row['family']} | {row['accuracy']} | {row['oracle']} | "
            f"{row['coverage']} | {row['precision'] if row['precision'] is not None else '-'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
