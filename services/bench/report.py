"""The bench report: computed from the labels of record (exported from Kafka) against the hidden
labels, plus the plot. Pure functions, so the numbers can be recomputed and checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


def from_event(event: events_pb2.LabelFinalized) -> FinalLabel:
    """A FinalLabel from a `labels` event."""
    return FinalLabel(
        item_id=event.ingested.item.item_id,
        label=event.labels[0] if event.labels else "",
        source=event.source,
        ingested_ms=event.ingested.ingested_at.ToMilliseconds(),
        finalized_ms=event.finalized_at.ToMilliseconds(),
    )


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 6) if total else None


def summarize(
    order: Sequence[str],
    truth: Mapping[str, str],
    finals: Mapping[str, FinalLabel],
    *,
    first_submit_ms: float,
    audit_tasks: int,
    retrains: int,
    promotions: int,
) -> dict[str, Any]:
    """The report's counts and accuracies over the items of `order` (stream order).

    `human_labeled` counts items whose final label came from people (audits never change a final
    label, so they are excluded by construction); `human_fraction = human_labeled / items`.
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
        "audit_tasks": audit_tasks,
        "human_fraction": _share(len(human), len(order)),
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


def windows(
    order: Sequence[str], truth: Mapping[str, str], finals: Mapping[str, FinalLabel], size: int
) -> list[dict[str, Any]]:
    """Per window of `size` items in stream order: the human share and the auto-label accuracy."""
    out = []
    for start in range(0, len(order), size):
        part = [finals[i] for i in order[start : start + size] if i in finals]
        auto = [f for f in part if f.source == MODEL]
        out.append(
            {
                "start": start,
                "end": min(start + size, len(order)),
                "human_share": _share(sum(f.source == HUMAN for f in part), len(part)),
                "auto_accuracy": _share(sum(f.label == truth[f.item_id] for f in auto), len(auto)),
                "auto": len(auto),
            }
        )
    return out


def plot(report: Mapping[str, Any], path: Path) -> None:
    """A PNG: human share and auto-label accuracy per window of the stream, promotions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["windows"]
    mids = [(w["start"] + w["end"]) / 2 for w in series]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.plot(mids, [w["human_share"] for w in series], marker="o", label="share labeled by people")
    acc = [
        (m, w["auto_accuracy"]) for m, w in zip(mids, series, strict=True) if w["auto_accuracy"] is not None
    ]
    if acc:
        ax.plot([m for m, _ in acc], [a for _, a in acc], marker="s", label="auto-label accuracy")
    ax.axhline(report["target_precision"], color="grey", linestyle=":", label="target precision")
    ref = report.get("reference") or {}
    if ref.get("human_fraction") is not None:
        ax.axhline(ref["human_fraction"], color="tab:red", linestyle="--", label="reference: share by people")
    for i, position in enumerate(report.get("promotion_positions", [])):
        ax.axvline(position, color="tab:green", alpha=0.4, label="model promoted" if i == 0 else None)
    ax.set_xlabel("items in stream order")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Labelloop on {report['dataset']} ({report['items']} items)")
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
