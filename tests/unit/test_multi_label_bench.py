"""The multi-label bench report and the reference policy extended to label lists."""

import random

import pytest

from labelloop.bench.multilabel import _lowest_threshold, multi_label_reference, multi_label_summary
from labelloop.bench.report import AnnotationCount, bench_row
from labelloop.v1 import common_pb2, events_pb2

LABELS = ["a", "b", "c"]


def final(labels: list[str], source: int) -> events_pb2.LabelFinalized:
    return events_pb2.LabelFinalized(labels=labels, source=source)


def test_the_summary_counts_exact_match_hamming_and_micro_f1() -> None:
    order = ["1", "2", "3", "4"]
    truth = {"1": ("a",), "2": ("a", "b"), "3": (), "4": ("c",)}
    finals = {
        "1": final(["a"], common_pb2.LABEL_SOURCE_MODEL),  # exact
        "2": final(["a"], common_pb2.LABEL_SOURCE_MODEL),  # misses b
        "3": final([], common_pb2.LABEL_SOURCE_HUMAN),  # exact (no label)
        "4": final(["c"], common_pb2.LABEL_SOURCE_HUMAN),  # exact
    }
    s = multi_label_summary(order, truth, finals, LABELS, AnnotationCount(total=3))
    assert s["human_fraction"] == 0.5 and s["human_effort"] == 0.75 and s["auto_labels"] == 2
    assert s["exact_match"] == s["accuracy"] == 0.75
    assert s["hamming_loss"] == pytest.approx(1 / 12)
    assert s["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    assert s["auto_exact_precision"] == s["auto_accuracy"] == 0.5
    assert s["auto_hamming_loss"] == pytest.approx(1 / 6)
    report = {**s, "run": "x", "target_precision": 0.95, "retrains": 1, "wall_s": 1.0, "reference": {}}
    assert bench_row(report)[0] == "x"  # the make bench table takes a multi-label row


def test_the_reference_threshold_admits_ties_together() -> None:
    import numpy as np

    conf = np.array([0.9, 0.9, 0.8, 0.7])
    ok = np.array([True, True, True, False])
    assert _lowest_threshold(conf, ok, 0.95) == 0.8
    assert _lowest_threshold(conf, ok, 0.7) == 0.7
    assert _lowest_threshold(conf[:2], np.array([True, False]), 0.95) == 2.0


def test_the_reference_learns_a_separable_stream_and_auto_labels_it() -> None:
    rng = random.Random(0)
    words = {"a": "alpha apple", "b": "bravo banana", "c": "charlie cherry"}
    texts, lists = [], []
    for _ in range(600):
        on = [x for x in LABELS if rng.random() < 0.4]
        texts.append(" ".join([words[x] for x in on] + ["filler"]))
        lists.append(on)
    run = multi_label_reference(texts, lists, LABELS, target_precision=0.9, seed=0)
    # the first 100 go to people; a separable stream is then mostly auto-labeled, and right
    assert 100 / 600 <= run["human_fraction"] < 0.5
    assert run["auto_accuracy"] >= 0.9
    assert run["accuracy"] >= 0.95 and run["retrains"] >= 1
