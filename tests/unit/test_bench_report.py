"""The bench report's arithmetic: counts add up, accuracies and latencies are what they say."""

import pytest

from labelloop.bench.report import HUMAN, MODEL, FinalLabel, summarize, windows


def final(item: str, label: str, source: int, ingested: float = 0.0, finalized: float = 10.0) -> FinalLabel:
    return FinalLabel(item, label, source, ingested, finalized)


ORDER = ["a", "b", "c", "d", "e"]
TRUTH = {"a": "x", "b": "y", "c": "x", "d": "y", "e": "x"}


def test_counts_add_up_and_accuracies_are_shares() -> None:
    finals = {
        "a": final("a", "x", HUMAN),
        "b": final("b", "y", HUMAN),
        "c": final("c", "y", MODEL, 1000, 1020),  # wrong auto label
        "d": final("d", "y", MODEL, 1000, 1040),
        "e": final("e", "x", MODEL, 1000, 1100),
    }
    r = summarize(ORDER, TRUTH, finals, first_submit_ms=0.0, audit_tasks=1, retrains=2, promotions=1)
    assert r["human_labeled"] + r["auto_labeled"] == r["items"] == 5
    assert r["human_fraction"] == pytest.approx(0.4)
    assert r["accuracy"] == pytest.approx(0.8)
    assert r["auto_accuracy"] == pytest.approx(2 / 3)
    assert r["human_accuracy"] == 1.0
    assert r["classes"] == 2
    assert r["auto_latency_ms"]["p50"] == pytest.approx(40.0)
    assert r["throughput_items_per_s"] == pytest.approx(5 / 1.1, abs=0.01)
    assert (r["audit_tasks"], r["retrains"], r["promotions"]) == (1, 2, 1)


def test_no_auto_labels_means_no_auto_accuracy() -> None:
    finals = {i: final(i, TRUTH[i], HUMAN) for i in ORDER}
    r = summarize(ORDER, TRUTH, finals, first_submit_ms=0.0, audit_tasks=0, retrains=0, promotions=0)
    assert r["auto_accuracy"] is None and r["auto_latency_ms"]["p50"] is None
    assert r["human_fraction"] == 1.0


def test_windows_follow_the_stream_order() -> None:
    finals = {i: final(i, TRUTH[i], HUMAN if i in "ab" else MODEL) for i in ORDER}
    w = windows(ORDER, TRUTH, finals, 2)
    assert [(x["start"], x["end"]) for x in w] == [(0, 2), (2, 4), (4, 5)]
    assert [x["human_share"] for x in w] == [1.0, 0.0, 0.0]
    assert w[0]["auto_accuracy"] is None and w[1]["auto_accuracy"] == 1.0


def test_the_make_bench_row_marks_the_targets_against_the_reference() -> None:
    from labelloop.cli.main import bench_row

    run = {
        "run": "bbcnews",
        "items": 2225,
        "human_fraction": 0.10,
        "accuracy": 0.969,
        "auto_accuracy": 0.965,
        "retrains": 9,
        "wall_s": 70.4,
        "reference": {"human_fraction": 0.151, "accuracy": 0.973},
    }
    row = bench_row(run)
    assert row[2] == "0.100 (0.151)" and row[3] == "0.969 (0.973)"
    assert row[6] == "met / met", "0.100 <= 0.7 x 0.151 and 0.969 >= 0.973 - 0.005"
    assert bench_row({**run, "human_fraction": 0.11, "accuracy": 0.967})[6] == "missed / missed"


def test_source_stats_score_each_source_against_the_hidden_labels() -> None:
    from labelloop.bench.report import source_stats

    truth = {"1": "a", "2": "b", "3": "a", "4": "b"}
    votes = {"1": {"rule:x": "a", "llm:m": "a"}, "2": {"rule:x": "a"}, "3": {}, "4": {"llm:m": "b"}}
    assert source_stats(votes, truth) == {
        "llm:m": {"votes": 2, "coverage": 0.5, "accuracy": 1.0},
        "rule:x": {"votes": 2, "coverage": 0.5, "accuracy": 0.5},
    }
