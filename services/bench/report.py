"""The bench report: computed from the raw `labels` and `annotations` topics of the project
against the hidden labels, plus the table rows and the plot. Pure functions, so the numbers can
be recomputed and checked.

Two shares of people's work, both over all items of the stream:

- ``human_fraction``: items whose final label came from people (``human_labeled / items``);
- ``human_effort``: every answer people gave (``annotations / items``): each annotator of a
  k-annotator task, the extra annotator a tie calls, audits of auto-labels and exploration items
  included. It is what people were paid for; with one annotator and no audits it equals
  ``human_fraction``. Reviews of labels flagged before a training are answers too.

``label_issues`` (runs with simulated annotator errors): the labels the checks before training
flagged (the items of the review tasks on `tasks`), how many of them were truly wrong against the
hidden labels (precision), and how many of the wrong people's labels that reached a training
they caught (recall), up to the end of the last training the report saw (``trained_until_ms``).
The system never sees the hidden labels; the bench compares afterwards.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.v1 import common_pb2, events_pb2

MODEL = common_pb2.LABEL_SOURCE_MODEL
HUMAN = common_pb2.LABEL_SOURCE_HUMAN


@dataclass(frozen=True)
class FinalLabel:
    """The part of a final label the report needs."""

    item_id: str
    label: str
    source: int
    ingested_ms: float
    finalized_ms: float
    model_version: int = 0  # the Triton version of a model's label (0 for people's)


def from_event(event: events_pb2.LabelFinalized) -> FinalLabel:
    """A FinalLabel from a `labels` event."""
    return FinalLabel(
        item_id=event.ingested.item.item_id,
        label=event.labels[0] if event.labels else "",
        source=event.source,
        ingested_ms=event.ingested.ingested_at.ToMilliseconds(),
        finalized_ms=event.finalized_at.ToMilliseconds(),
        model_version=event.model_version,
    )


@dataclass(frozen=True)
class AnnotationCount:
    """People's answers to one project's tasks, from the raw `annotations` topic.

    ``total`` counts distinct answers (one per lease: a re-sent answer is counted once),
    ``audits`` those that audited an auto-label, ``per_item`` the answers per item id.
    """

    total: int = 0
    audits: int = 0
    per_item: Mapping[str, int] = field(default_factory=dict)


def count_annotations(events: Iterable[events_pb2.AnnotationSubmitted]) -> AnnotationCount:
    """Count `AnnotationSubmitted` events (already filtered to one project), once per lease.

    human-tasks re-sends an answer's events under the same lease id when a crash interrupted
    them (at-least-once), so the lease id, not the event, is the unit; an event without one
    counts as its own answer.
    """
    leases: set[str] = set()
    total = audits = 0
    per_item: Counter[str] = Counter()
    for event in events:
        if event.lease_id:
            if event.lease_id in leases:
                continue
            leases.add(event.lease_id)
        total += 1
        audits += int(event.audit)
        per_item[event.item_id] += 1
    return AnnotationCount(total=total, audits=audits, per_item=dict(per_item))


def label_issue_stats(
    flagged: Mapping[str, str], in_training: Mapping[str, str], truth: Mapping[str, str]
) -> dict[str, Any]:
    """`flagged`: item -> the label the checks flagged (the label under review); `in_training`:
    item -> people's label of every item that reached a training (final human labels and audits'
    answers before the last training). Precision: flagged labels that are wrong; recall: wrong
    labels in training that were flagged."""
    wrong_flagged = sum(label != truth.get(item, label) for item, label in flagged.items())
    wrong = {item for item, label in in_training.items() if label != truth.get(item, label)}
    caught = sum(item in wrong for item in flagged)
    return {
        "found": len(flagged),
        "truly_wrong": wrong_flagged,
        "precision": _share(wrong_flagged, len(flagged)),
        "wrong_in_training": len(wrong),
        "caught": caught,
        "recall": _share(caught, len(wrong)),
    }


def max_without_final_label(submits: Sequence[tuple[float, int]], finalized_ms: Iterable[float]) -> int:
    """The most items ever submitted without a final label, as the topics tell it.

    ``submits``: per SubmitBatch call, (milliseconds just before the call, items submitted once
    it returned); ``finalized_ms``: the `finalized_at` of each item's final label. At each call,
    the items then submitted minus those already finalized is an upper bound of what was
    outstanding, so the maximum over the calls bounds the bench's window from above.
    """
    done = sorted(finalized_ms)
    return max((n - bisect.bisect_right(done, at) for at, n in submits), default=0)


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 6) if total else None


def summarize(
    order: Sequence[str],
    truth: Mapping[str, str],
    finals: Mapping[str, FinalLabel],
    *,
    first_submit_ms: float,
    annotations: AnnotationCount,
    retrains: int,
    promotions: int,
) -> dict[str, Any]:
    """The report's counts and accuracies over the items of `order` (stream order).

    `human_labeled` counts items whose final label came from people (audits never change a final
    label, so they are excluded by construction); `human_fraction = human_labeled / items`.
    `human_effort = annotations / items` counts every answer (see the module doc); `audit_tasks`
    is the number of audit answers among them.
    """
    labeled = [finals[i] for i in order if i in finals]
    auto = [f for f in labeled if f.source == MODEL]
    human = [f for f in labeled if f.source == HUMAN]
    correct = sum(f.label == truth[f.item_id] for f in labeled)
    auto_correct = sum(f.label == truth[f.item_id] for f in auto)
    human_correct = sum(f.label == truth[f.item_id] for f in human)
    last_ms = max((f.finalized_ms for f in labeled), default=first_submit_ms)
    latencies = np.array([f.finalized_ms - f.ingested_ms for f in auto], dtype=np.float64)
    seconds = max((last_ms - first_submit_ms) / 1000, 1e-9)
    return {
        "items": len(order),
        "labeled": len(labeled),
        "classes": len(set(truth[i] for i in order)),
        "human_labeled": len(human),
        "auto_labeled": len(auto),
        "annotations": annotations.total,
        "audit_tasks": annotations.audits,
        "human_fraction": _share(len(human), len(order)),
        "human_effort": _share(annotations.total, len(order)),
        "accuracy": _share(correct, len(labeled)),
        "auto_accuracy": _share(auto_correct, len(auto)),
        "human_accuracy": _share(human_correct, len(human)),
        "retrains": retrains,
        "promotions": promotions,
        "throughput_items_per_s": round(len(labeled) / seconds, 2),
        "auto_latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
            "p99": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
        },
    }


def source_stats(
    votes: Mapping[str, Mapping[str, str]], truth: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Per label source other than the model (rules, the LLM): how many items it voted on, its
    coverage of the stream and its accuracy against the hidden labels (None without votes).
    `votes` maps item ids to {source: label}."""
    out: dict[str, dict[str, Any]] = {}
    for item_id, cast in votes.items():
        for source, label in cast.items():
            row = out.setdefault(source, {"votes": 0, "correct": 0})
            row["votes"] += 1
            row["correct"] += truth.get(item_id) == label
    return {
        source: {
            "votes": row["votes"],
            "coverage": row["votes"] / max(len(truth), 1),
            "accuracy": _share(row["correct"], row["votes"]),
        }
        for source, row in sorted(out.items())
    }


def withdrawn_stats(
    tasks: Iterable[events_pb2.TaskRouted], truth: Mapping[str, str], finals: Mapping[str, FinalLabel]
) -> dict[str, Any]:
    """The auto-labels that came from withdrawn tasks (a waiting task that a newer model
    auto-labeled: the ``withdraw`` commands of the raw `tasks` topic, once per item, kept where the
    item's final label is the model's) and their accuracy against the hidden labels (None without
    any). Such items went to people with probability 1 and were never answered: where the stream
    outruns people, their number against `human_labeled` shows how far the labels a young model
    is calibrated on are from the sample their weights say (retraining/calibration.py).
    ``withdrawn_audited`` counts those with an audit task on the topic (routing's audit draw, as
    for a new item's auto-label)."""
    items: set[str] = set()
    audited: set[str] = set()
    for t in tasks:
        if t.HasField("withdraw"):
            items.add(t.ingested.item.item_id)
        elif t.reason == events_pb2.TASK_REASON_AUDIT:
            audited.add(t.ingested.item.item_id)
    auto = [i for i in sorted(items) if i in finals and finals[i].source == MODEL]
    correct = sum(truth.get(i) == finals[i].label for i in auto)
    by_version: dict[str, dict[str, dict[str, Any]]] = {}
    for item_id, final in finals.items():
        if final.source != MODEL:
            continue
        kind = "withdrawn" if item_id in items else "new"
        row = by_version.setdefault(str(final.model_version), {}).setdefault(kind, {"n": 0, "correct": 0})
        row["n"] += 1
        row["correct"] += truth.get(item_id) == final.label
    return {
        "withdrawn_auto_labels": len(auto),
        "withdrawn_auto_accuracy": _share(correct, len(auto)),
        "withdrawn_audited": sum(i in audited for i in auto),
        # per serving version: its auto-labels of new items and of withdrawn tasks, and their accuracy
        "auto_by_version": {
            version: {
                kind: {"n": row["n"], "accuracy": _share(row["correct"], row["n"])}
                for kind, row in kinds.items()
            }
            for version, kinds in sorted(by_version.items(), key=lambda kv: int(kv[0]))
        },
    }


def family_stats(
    finals: Mapping[str, FinalLabel],
    truth: Mapping[str, str],
    model_events: Iterable[events_pb2.ModelEvent],
) -> dict[str, Any]:
    """Which model family served each version, and the auto-labels' accuracy per family.

    ``served_versions``: per version that served (a ``PROMOTED`` or ``ROLLED_BACK`` event), its
    family, the global threshold it started with, the share of the weighted calibration sample
    that threshold admitted (``calibrated_coverage``: what calibration expected it to auto-label)
    and its auto-labels (new and withdrawn) with their accuracy. ``auto_by_family``: the same
    auto-labels summed per family. A calibration that promised more than its version kept shows
    here first: the expected coverage against what it admitted, the accuracy against the target.
    """
    served: dict[int, dict[str, Any]] = {}
    for e in model_events:
        if e.kind in (events_pb2.MODEL_EVENT_KIND_PROMOTED, events_pb2.MODEL_EVENT_KIND_ROLLED_BACK):
            served.setdefault(
                e.model_version,
                {
                    "family": e.family,
                    "threshold": round(e.threshold, 6),
                    "calibrated_coverage": _round(e.metrics.get("calibrated_coverage")),
                },
            )
    counts: dict[int, list[int]] = {}
    for item_id, final in finals.items():
        if final.source == MODEL:
            row = counts.setdefault(final.model_version, [0, 0])
            row[0] += 1
            row[1] += truth.get(item_id) == final.label
    versions = {}
    families: dict[str, list[int]] = {}
    for version in sorted(served.keys() | counts.keys()):
        n, correct = counts.get(version, [0, 0])
        info = served.get(version, {"family": "", "threshold": None, "calibrated_coverage": None})
        versions[str(version)] = {**info, "auto": n, "auto_accuracy": _share(correct, n)}
        total = families.setdefault(info["family"], [0, 0])
        total[0] += n
        total[1] += correct
    return {
        "served_versions": versions,
        "auto_by_family": {
            family: {"auto": n, "auto_accuracy": _share(correct, n)}
            for family, (n, correct) in sorted(families.items())
            if n
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def windows(
    order: Sequence[str],
    truth: Mapping[str, str],
    finals: Mapping[str, FinalLabel],
    size: int,
    annotations: AnnotationCount | None = None,
) -> list[dict[str, Any]]:
    """Per window of `size` items in stream order: the human share, people's answers per item
    (with `annotations`) and the auto-label accuracy."""
    out = []
    per_item = annotations.per_item if annotations is not None else {}
    for start in range(0, len(order), size):
        ids = order[start : start + size]
        part = [finals[i] for i in ids if i in finals]
        auto = [f for f in part if f.source == MODEL]
        out.append(
            {
                "start": start,
                "end": min(start + size, len(order)),
                "human_share": _share(sum(f.source == HUMAN for f in part), len(part)),
                "human_effort": _share(sum(per_item.get(i, 0) for i in ids), len(ids)),
                "auto_accuracy": _share(sum(f.label == truth[f.item_id] for f in auto), len(auto)),
                "auto": len(auto),
            }
        )
    return out


#: The issue's goal for people's share, as a multiple of the reference's mean.
HUMAN_FRACTION_GOAL = 0.7
#: How far below the target precision the realized auto-label precision may fall.
AUTO_ACCURACY_SLACK = 0.01
MULTI_LABEL_AUTO_SLACK = 0.02  # exact-match precision of multi-label auto-labels (issue 15)
_EPS = 1e-9


def target_checks(report: Mapping[str, Any]) -> dict[str, Any]:
    """The benchmark's targets for one run (None where a number is missing):

    - ``below_reference``: ``human_fraction`` < the reference's mean;
    - ``ratio`` (``human_fraction`` / the reference's mean) and ``goal``: ratio <= 0.7;
    - ``auto_accuracy``: ``auto_accuracy`` >= target precision - 0.01 (multi-label runs, whose
      ``auto_accuracy`` is exact-match precision: - 0.02, issue 15's target);
    - ``accuracy``: ``accuracy`` >= target precision.
    """
    ref = report.get("reference") or {}
    target = report["target_precision"]
    hf, ref_hf = report.get("human_fraction"), ref.get("human_fraction")
    ratio = hf / ref_hf if hf is not None and ref_hf else None
    auto, acc = report.get("auto_accuracy"), report.get("accuracy")
    return {
        "below_reference": None if hf is None or ref_hf is None else hf < ref_hf,
        "ratio": ratio,
        "goal": None if ratio is None else ratio <= HUMAN_FRACTION_GOAL + _EPS,
        "auto_accuracy": None if auto is None else auto >= target - auto_accuracy_slack(report) - _EPS,
        "accuracy": None if acc is None else acc >= target - _EPS,
    }


def auto_accuracy_slack(report: Mapping[str, Any]) -> float:
    """How far under the target precision a run's auto-labels may be: 0.01, or 0.02 for a
    multi-label run (exact match: every label right)."""
    return MULTI_LABEL_AUTO_SLACK if report.get("task_type") == "multi-label" else AUTO_ACCURACY_SLACK


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: floats with `digits` decimals, None as "-"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def reference_spread(ref: Mapping[str, Any], key: str) -> str:
    """The reference's mean and range of `key`: "0.600 (0.580-0.620)", or the mean alone."""
    span = (ref.get("range") or {}).get(key)
    mean = fmt(ref.get(key))
    return f"{mean} ({fmt(span[0])}-{fmt(span[1])})" if span else mean


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "missed")


#: The `make bench` table's columns (`bench-results/table.md` and the README).
BENCH_COLUMNS = (
    "run",
    "items",
    "human_fraction",
    "human_effort",
    "ref human_fraction, mean (range)",
    "accuracy (ref mean)",
    "auto_accuracy (ref mean)",
    "retrains",
    "hf < ref mean (ratio; goal <= 0.7x)",
    "auto_accuracy >= target - 0.01",
    "accuracy >= target",
    "wall s",
)


def bench_row(report: Mapping[str, Any]) -> list[str]:
    """One `make bench` table row (:data:`BENCH_COLUMNS`): the run's numbers, the reference's
    mean over its seeds (with the range of people's share), and the targets."""
    ref = report.get("reference") or {}
    checks = target_checks(report)
    ratio = checks["ratio"]
    hf_cell = _met(checks["below_reference"])
    if ratio is not None:
        hf_cell += f" ({ratio:.2f}x; goal {_met(checks['goal'])})"
    return [
        str(report.get("run", report.get("dataset", ""))),
        str(report["items"]),
        fmt(report["human_fraction"]),
        fmt(report.get("human_effort")),
        reference_spread(ref, "human_fraction"),
        f"{fmt(report['accuracy'])} ({fmt(ref.get('accuracy'))})",
        f"{fmt(report['auto_accuracy'])} ({fmt(ref.get('auto_accuracy'))})",
        str(report["retrains"]),
        hf_cell,
        _met(checks["auto_accuracy"]),
        _met(checks["accuracy"]),
        f"{report['wall_s']:.0f}",
    ]


def markdown_table(rows: Sequence[Sequence[str]], columns: Sequence[str] = BENCH_COLUMNS) -> list[str]:
    """The lines of a Markdown table."""
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def plot(report: Mapping[str, Any], path: Path) -> None:
    """A PNG: human share and auto-label accuracy per window of the stream, promotions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["windows"]
    mids = [(w["start"] + w["end"]) / 2 for w in series]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.plot(mids, [w["human_share"] for w in series], marker="o", label="share labeled by people")
    effort = [(m, w.get("human_effort")) for m, w in zip(mids, series, strict=True)]
    if any(e is not None for _, e in effort):
        ax.plot(
            [m for m, e in effort if e is not None],
            [e for _, e in effort if e is not None],
            marker=".",
            linestyle="-.",
            color="tab:purple",
            label=f"people's answers per item (human_effort {fmt(report.get('human_effort'))})",
        )
    acc = [
        (m, w["auto_accuracy"]) for m, w in zip(mids, series, strict=True) if w["auto_accuracy"] is not None
    ]
    if acc:
        ax.plot([m for m, _ in acc], [a for _, a in acc], marker="s", label="auto-label accuracy")
    ax.axhline(report["target_precision"], color="grey", linestyle=":", label="target precision")
    ref = report.get("reference") or {}
    if ref.get("human_fraction") is not None:
        span = (ref.get("range") or {}).get("human_fraction")
        ax.axhline(
            ref["human_fraction"],
            color="tab:red",
            linestyle="--",
            label=f"reference: share by people, mean {fmt(ref['human_fraction'])}"
            + (f" (range {fmt(span[0])}-{fmt(span[1])})" if span else ""),
        )
        if span:
            ax.axhspan(span[0], span[1], color="tab:red", alpha=0.12)
    for i, position in enumerate(report.get("promotion_positions", [])):
        ax.axvline(position, color="tab:green", alpha=0.4, label="model promoted" if i == 0 else None)
    ax.set_xlabel("items in stream order")
    ax.set_ylabel("share of items (answers per item for human_effort)")
    ax.set_ylim(0, max(1.05, *(e + 0.05 for _, e in effort if e is not None)))
    ax.set_title(
        f"Labelloop on {report['dataset']} ({report['items']} items): human_fraction "
        f"{fmt(report.get('human_fraction'))}, human_effort {fmt(report.get('human_effort'))}"
    )
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
