"""The bench report's arithmetic: counts add up, accuracies and latencies are what they say."""

import pytest

from labelloop.bench.report import (
    HUMAN,
    MODEL,
    AnnotationCount,
    FinalLabel,
    count_annotations,
    label_issue_stats,
    max_without_final_label,
    summarize,
    windows,
)
from labelloop.v1 import events_pb2


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
    answers = AnnotationCount(total=3, audits=1, per_item={"a": 1, "b": 1, "d": 1})
    r = summarize(ORDER, TRUTH, finals, first_submit_ms=0.0, annotations=answers, retrains=2, promotions=1)
    assert r["human_labeled"] + r["auto_labeled"] == r["items"] == 5
    assert r["human_fraction"] == pytest.approx(0.4)
    assert r["accuracy"] == pytest.approx(0.8)
    assert r["auto_accuracy"] == pytest.approx(2 / 3)
    assert r["human_accuracy"] == 1.0
    assert r["classes"] == 2
    assert r["auto_latency_ms"]["p50"] == pytest.approx(40.0)
    assert r["throughput_items_per_s"] == pytest.approx(5 / 1.1, abs=0.01)
    assert (r["audit_tasks"], r["retrains"], r["promotions"]) == (1, 2, 1)
    assert r["annotations"] == 3 and r["human_effort"] == pytest.approx(0.6), (
        "2 labels + 1 audit over 5 items"
    )


def test_no_auto_labels_means_no_auto_accuracy() -> None:
    finals = {i: final(i, TRUTH[i], HUMAN) for i in ORDER}
    r = summarize(
        ORDER, TRUTH, finals, first_submit_ms=0.0, annotations=AnnotationCount(), retrains=0, promotions=0
    )
    assert r["auto_accuracy"] is None and r["auto_latency_ms"]["p50"] is None
    assert r["human_fraction"] == 1.0


def test_windows_follow_the_stream_order() -> None:
    finals = {i: final(i, TRUTH[i], HUMAN if i in "ab" else MODEL) for i in ORDER}
    w = windows(ORDER, TRUTH, finals, 2)
    assert [(x["start"], x["end"]) for x in w] == [(0, 2), (2, 4), (4, 5)]
    assert [x["human_share"] for x in w] == [1.0, 0.0, 0.0]
    assert w[0]["auto_accuracy"] is None and w[1]["auto_accuracy"] == 1.0


def answer(
    item: str, lease: str, annotator: str = "p", audit: bool = False
) -> events_pb2.AnnotationSubmitted:
    return events_pb2.AnnotationSubmitted(
        task_id=f"t-{item}", item_id=item, project_id="p", annotator_id=annotator, lease_id=lease, audit=audit
    )


def test_human_effort_counts_every_answer_once_per_lease() -> None:
    """k annotators, the extra one a tie calls and audits all count; a re-sent answer does not."""
    events = [
        answer("a", "l1", "p1"),
        answer("a", "l2", "p2"),
        answer("a", "l3", "p3"),  # k = 3 on one item
        answer("a", "l3", "p3"),  # re-sent after a crash: same lease
        answer("b", "l4", "p1"),
        answer("b", "l5", "p2"),
        answer("b", "l6", "p3"),  # the tie-breaker
        answer("c", "l7", "p1", audit=True),  # an audit of c's auto-label
    ]
    count = count_annotations(events)
    assert (count.total, count.audits) == (7, 1)
    assert count.per_item == {"a": 3, "b": 3, "c": 1}
    finals = {
        "a": final("a", "x", HUMAN),
        "b": final("b", "y", HUMAN),
        **{i: final(i, TRUTH[i], MODEL) for i in "cde"},
    }
    r = summarize(ORDER, TRUTH, finals, first_submit_ms=0.0, annotations=count, retrains=0, promotions=0)
    assert r["human_fraction"] == pytest.approx(2 / 5), "human_fraction keeps its meaning"
    assert r["human_effort"] == pytest.approx(7 / 5)
    w = windows(ORDER, TRUTH, finals, 2, count)
    assert [x["human_effort"] for x in w] == [3.0, 0.5, 0.0]


def test_the_window_bound_is_read_from_submit_times_and_label_times() -> None:
    # window 100, batches of 50: 99 items open when the third batch was sent -> 149 open
    finalized = [5.0] * 1  # one item finalized at t=5
    submits = [(0.0, 50), (1.0, 100), (10.0, 150)]
    assert max_without_final_label(submits, finalized) == 149
    # once 50 are finalized before the third batch, 100 are open at most
    assert max_without_final_label(submits, [5.0] * 50) == 100
    assert max_without_final_label([], []) == 0
    # a label finalized after the call does not count for it
    assert max_without_final_label([(10.0, 150)], [10.5] * 50) == 150


@pytest.mark.parametrize(
    ("submitted", "finalized", "remaining", "expected"),
    [
        (0, 0, 1000, 50),  # an empty window: a whole batch
        (99, 0, 1000, 1),  # one slot left: one item, not a batch (that made 149 for 100)
        (100, 0, 1000, 0),  # full: wait
        (100, 30, 1000, 30),
        (180, 130, 5, 5),  # the last items
        (120, 10, 1000, 0),  # never negative
    ],
)
def test_the_bench_never_submits_past_its_window(
    submitted: int, finalized: int, remaining: int, expected: int
) -> None:
    from labelloop.bench.loop import submission_size

    assert submission_size(submitted, finalized, 100, 50, remaining) == expected


def test_a_simulated_stream_never_has_more_than_the_window_open() -> None:
    """Submit by `submission_size`, finalize a few items between calls: at most `window` open."""
    from labelloop.bench.loop import submission_size

    window, total, submitted, finalized, peak = 100, 2000, 0, 0, 0
    step = 0
    while submitted < total:
        size = submission_size(submitted, finalized, window, 50, total - submitted)
        submitted += size
        peak = max(peak, submitted - finalized)
        step += 1
        finalized = min(submitted, finalized + (step * 7) % 13)
    assert peak == window


def test_the_annotator_pool_outlasts_a_second_tie() -> None:
    """k = 3 over 5 classes: 1-1-1 calls a fourth person, 1-1-1-1 a fifth, who must exist."""
    from labelloop.bench.loop import annotator_pool
    from labelloop.human_tasks.consensus import majority

    assert majority(["a", "b", "c"]).tie and majority(["a", "b", "c", "d"]).tie
    assert not majority(["a", "b", "c", "d", "a"]).tie
    assert annotator_pool(3) >= 5
    # k = 1: a review excludes the first annotator; a reviewer who disagrees ties, a third decides
    assert annotator_pool(1) == 3


def test_audit_work_counts_what_audits_ask_and_what_people_gave() -> None:
    from labelloop.bench.loop import audit_work

    def task(item: str, reason: int, withdraw: bool = False) -> events_pb2.TaskRouted:
        t = events_pb2.TaskRouted(task_id=f"{item}:audit", reason=reason, annotators_required=1)
        if withdraw:
            t.withdraw.label.labels.append("x")
        return t

    tasks = [
        task("a", events_pb2.TASK_REASON_AUDIT),
        task("b", events_pb2.TASK_REASON_AUDIT),
        task("c", events_pb2.TASK_REASON_UNCERTAIN),
        task("d", events_pb2.TASK_REASON_UNCERTAIN, withdraw=True),
    ]
    given = [answer("a:audit", "l1", audit=True), answer("a:audit", "l1", audit=True)]
    for a in given:
        a.task_id = a.item_id
    assert audit_work(tasks, given) == (2, 1), "b's audit is still unanswered; a re-sent answer counts once"


REPORT = {
    "run": "bbcnews",
    "items": 2225,
    "human_fraction": 0.10,
    "human_effort": 0.125,
    "accuracy": 0.969,
    "auto_accuracy": 0.945,
    "retrains": 9,
    "wall_s": 70.4,
    "target_precision": 0.95,
    "reference": {
        "human_fraction": 0.151,
        "accuracy": 0.973,
        "auto_accuracy": 0.97,
        "range": {"human_fraction": [0.14, 0.16], "accuracy": [0.97, 0.976], "auto_accuracy": [0.96, 0.98]},
        "seeds": [0, 1, 2, 3, 4],
    },
}


def test_the_make_bench_row_marks_the_targets_against_the_reference_mean() -> None:
    from labelloop.bench.report import BENCH_COLUMNS, bench_row, markdown_table

    row = bench_row(REPORT)
    cells = dict(zip(BENCH_COLUMNS, row, strict=True))
    assert cells["human_fraction"] == "0.100" and cells["human_effort"] == "0.125"
    assert cells["ref human_fraction, mean (range)"] == "0.151 (0.140-0.160)"
    assert cells["accuracy (ref mean)"] == "0.969 (0.973)"
    assert cells["hf < ref mean (ratio; goal <= 0.7x)"] == "met (0.66x; goal met)"
    assert cells["auto_accuracy >= target - 0.01"] == "met", "0.945 >= 0.94"
    assert cells["accuracy >= target"] == "met"

    worse = bench_row({**REPORT, "human_fraction": 0.151, "auto_accuracy": 0.9399, "accuracy": 0.9499})
    cells = dict(zip(BENCH_COLUMNS, worse, strict=True))
    assert cells["hf < ref mean (ratio; goal <= 0.7x)"] == "missed (1.00x; goal missed)", "equal is not below"
    assert cells["auto_accuracy >= target - 0.01"] == "missed"
    assert cells["accuracy >= target"] == "missed"
    between = dict(zip(BENCH_COLUMNS, bench_row({**REPORT, "human_fraction": 0.12}), strict=True))
    assert between["hf < ref mean (ratio; goal <= 0.7x)"] == "met (0.79x; goal missed)"

    lines = markdown_table([row])
    assert len(lines) == 3 and lines[0].count("|") == len(BENCH_COLUMNS) + 1


def test_the_demo_summary_shows_both_shares_and_the_reference_range() -> None:
    from rich.console import Console

    from labelloop.cli.main import summary_table

    report = {
        **REPORT,
        "dataset": "20newsgroups",
        "classes": 20,
        "annotations": 278,
        "audit_tasks": 30,
        "human_accuracy": 1.0,
        "human_labeled": 222,
        "auto_labeled": 2003,
    }
    console = Console(width=200, record=True)
    console.print(summary_table(report))
    text = console.export_text()
    assert "human_effort" in text and "0.125" in text
    assert "0.151 (0.140-0.160)" in text and "mean of 5 seeds" in text
    assert "human_fraction < reference mean" in text and "met (0.66x" in text


def test_the_summary_of_a_multi_label_run_shows_its_labels_and_exact_match_targets() -> None:
    """`labelloop bench --data yeast` printed a KeyError ('classes') after the run: a multi-label
    report names its labels, not classes (the shape written by bench/multilabel.py)."""
    from rich.console import Console

    from labelloop.bench.report import target_checks
    from labelloop.cli.main import summary_table

    report = {
        "dataset": "yeast",
        "task_type": "multi-label",
        "labels": [f"Class{i}" for i in range(1, 15)],
        "items": 2417,
        "human_fraction": 0.9,
        "human_effort": 0.93,
        "auto_labels": 240,
        "exact_match": 0.99,
        "hamming_loss": 0.002,
        "micro_f1": 0.995,
        "accuracy": 0.99,
        "auto_accuracy": 0.935,
        "auto_hamming_loss": 0.011,
        "target_precision": 0.95,
        "window": 100,
        "retrains": 19,
        "promotions": 20,
        "wall_s": 287.7,
        "reference": {
            "seeds": [0, 1, 2, 3, 4],
            "human_fraction": 0.99,
            "accuracy": 0.998,
            "auto_accuracy": 0.844,
            "hamming_loss": 0.0003,
            "micro_f1": 0.9995,
            "range": {"human_fraction": [0.987, 0.993], "auto_accuracy": [0.781, 0.875]},
        },
    }
    console = Console(width=200, record=True)
    console.print(summary_table(report))
    text = console.export_text()
    assert "2417 items, 14 labels (multi-label)" in text
    assert "auto_accuracy (exact match)" in text and "0.844 (0.781-0.875)" in text
    assert "micro_f1" in text and "0.995" in text and "hamming_loss" in text
    # Exact-match precision 0.935 meets target - 0.02 (0.93); a single-label run would miss at - 0.01.
    assert "auto_accuracy >= 0.93" in text
    assert target_checks(report)["auto_accuracy"] is True
    assert target_checks({**report, "task_type": "single-label"})["auto_accuracy"] is False


def test_the_status_says_what_a_multi_label_projects_pairs_admit() -> None:
    from labelloop.cli.main import threshold_text
    from labelloop.v1 import admin_pb2

    assert threshold_text(admin_pb2.ProjectStatus(threshold=2.0)) == "admits nothing"
    assert threshold_text(admin_pb2.ProjectStatus(threshold=0.8125)) == "0.8125"
    pairs = admin_pb2.ProjectStatus(
        threshold=2.0,
        label_upper_thresholds={"a": 0.9, "b": 2.0, "c": 0.97},
        label_lower_thresholds={"a": 0.1, "b": -1.0, "c": -1.0},
    )
    assert threshold_text(pairs) == "per-label pairs: 2 of 3 labels can be auto-accepted on, 1 off"
    nothing = admin_pb2.ProjectStatus(
        threshold=2.0, label_upper_thresholds={"a": 2.0}, label_lower_thresholds={"a": -1.0}
    )
    assert threshold_text(nothing) == "admits nothing (per-label pairs)"


def test_source_stats_score_each_source_against_the_hidden_labels() -> None:
    from labelloop.bench.report import source_stats

    truth = {"1": "a", "2": "b", "3": "a", "4": "b"}
    votes = {"1": {"rule:x": "a", "llm:m": "a"}, "2": {"rule:x": "a"}, "3": {}, "4": {"llm:m": "b"}}
    assert source_stats(votes, truth) == {
        "llm:m": {"votes": 2, "coverage": 0.5, "accuracy": 1.0},
        "rule:x": {"votes": 2, "coverage": 0.5, "accuracy": 0.5},
    }


def test_label_issues_are_scored_against_the_hidden_labels() -> None:
    truth = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "x"}
    in_training = {"a": "y", "b": "x", "c": "x", "d": "y"}  # a and c wrong; e never trained on
    flagged = {"a": "y", "b": "x", "e": "y"}  # a right to flag, b wrongly, e (late) right
    assert label_issue_stats(flagged, in_training, truth) == {
        "found": 3,
        "truly_wrong": 2,
        "precision": pytest.approx(2 / 3, abs=1e-6),
        "wrong_in_training": 2,
        "caught": 1,
        "recall": 0.5,
    }
    assert label_issue_stats({}, {}, truth)["precision"] is None


def test_auto_labels_of_withdrawn_tasks_are_counted_once_and_scored() -> None:
    from labelloop.bench.report import withdrawn_stats

    def routed(item: str, withdraw: bool, audit: bool = False) -> events_pb2.TaskRouted:
        t = events_pb2.TaskRouted(task_id=f"{item}:audit" if audit else item)
        t.ingested.item.item_id = item
        if withdraw:
            t.withdraw.label.labels.append("x")
        if audit:
            t.reason = events_pb2.TASK_REASON_AUDIT
        return t

    tasks = [
        routed("a", False),
        routed("a", True),
        routed("a", False, audit=True),  # the audit the withdrawal carried, queued once published
        routed("e", False, audit=True),  # routing's own auto-label's audit: not a withdrawn one
        routed("a", True),  # a second withdrawal (a later deploy) is the same item
        routed("b", False),
        routed("b", True),
        routed("c", False),  # answered by people
        routed("d", True),  # started before the withdrawal came: people's label stands
    ]
    finals = {
        "a": FinalLabel("a", "x", MODEL, 0.0, 10.0, model_version=3),
        "b": FinalLabel("b", "x", MODEL, 0.0, 10.0, model_version=2),
        "c": final("c", "x", HUMAN),
        "d": final("d", "y", HUMAN),
        "e": FinalLabel("e", "y", MODEL, 0.0, 10.0, model_version=2),  # routing's own, wrong
    }
    assert withdrawn_stats(tasks, TRUTH, finals) == {
        "withdrawn_auto_labels": 2,
        "withdrawn_auto_accuracy": 0.5,  # a is right (x), b is wrong (y)
        "withdrawn_audited": 1,  # a
        "auto_by_version": {
            "2": {"withdrawn": {"n": 1, "accuracy": 0.0}, "new": {"n": 1, "accuracy": 0.0}},
            "3": {"withdrawn": {"n": 1, "accuracy": 1.0}},
        },
    }
    assert withdrawn_stats([], TRUTH, finals) == {
        "withdrawn_auto_labels": 0,
        "withdrawn_auto_accuracy": None,
        "withdrawn_audited": 0,
        "auto_by_version": {
            "2": {"new": {"n": 2, "accuracy": 0.0}},  # b and e are wrong
            "3": {"new": {"n": 1, "accuracy": 1.0}},
        },
    }


def test_family_stats_name_each_served_version_and_score_auto_labels_per_family() -> None:
    from labelloop.bench.report import family_stats

    def event(
        kind: int, version: int, family: str, threshold: float, coverage: float
    ) -> events_pb2.ModelEvent:
        e = events_pb2.ModelEvent(kind=kind, model_version=version, family=family, threshold=threshold)
        e.metrics["calibrated_coverage"] = coverage
        return e

    events = [
        event(events_pb2.MODEL_EVENT_KIND_TRAINED, 0, "cascade", 0.0, 0.5),  # not serving: not read
        event(events_pb2.MODEL_EVENT_KIND_PROMOTED, 2, "cascade", 0.4, 0.9),
        event(events_pb2.MODEL_EVENT_KIND_PROMOTED, 3, "tfidf-lr", 0.5, 0.6),
        event(events_pb2.MODEL_EVENT_KIND_ROLLED_BACK, 2, "cascade", 0.45, 0.9),  # first record kept
    ]
    finals = {
        "a": FinalLabel("a", "x", MODEL, 0.0, 10.0, model_version=3),  # right
        "b": FinalLabel("b", "x", MODEL, 0.0, 10.0, model_version=2),  # wrong (b is y)
        "e": FinalLabel("e", "y", MODEL, 0.0, 10.0, model_version=2),  # wrong (e is x)
        "c": final("c", "x", HUMAN),
    }
    assert family_stats(finals, TRUTH, events) == {
        "served_versions": {
            "2": {
                "family": "cascade",
                "threshold": 0.4,
                "calibrated_coverage": 0.9,
                "auto": 2,
                "auto_accuracy": 0.0,
            },
            "3": {
                "family": "tfidf-lr",
                "threshold": 0.5,
                "calibrated_coverage": 0.6,
                "auto": 1,
                "auto_accuracy": 1.0,
            },
        },
        "auto_by_family": {
            "cascade": {"auto": 2, "auto_accuracy": 0.0},
            "tfidf-lr": {"auto": 1, "auto_accuracy": 1.0},
        },
    }
    # An auto-label of a version no event names still counts, under no family.
    assert family_stats(finals, TRUTH, events[2:3])["auto_by_family"] == {
        "": {"auto": 2, "auto_accuracy": 0.0},
        "tfidf-lr": {"auto": 1, "auto_accuracy": 1.0},
    }


def test_the_bench_takes_the_projects_audit_rate_and_refuses_one_outside_0_1(monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    import labelloop.bench.loop as loop
    from labelloop.cli import main as cli
    from labelloop.core.projects import DEFAULT_AUDIT_RATE

    seen: list[float] = []

    def fake_run_bench(config, **_kwargs):
        seen.append(config.audit_rate)
        raise loop.BenchError("stopped by the test")

    monkeypatch.setattr(loop, "run_bench", fake_run_bench)
    report = str(tmp_path / "r.json")
    runner = CliRunner()
    assert runner.invoke(cli.app, ["bench", "--data", "bbcnews", "--report", report]).exit_code != 0
    assert (
        runner.invoke(
            cli.app, ["bench", "--data", "bbcnews", "--report", report, "--audit-rate", "0.1"]
        ).exit_code
        != 0
    )
    assert seen == [DEFAULT_AUDIT_RATE, 0.1]
    refused = runner.invoke(
        cli.app, ["bench", "--data", "bbcnews", "--report", report, "--audit-rate", "1.5"]
    )
    assert refused.exit_code == 2 and "--audit-rate" in refused.output
    assert seen == [DEFAULT_AUDIT_RATE, 0.1], "refused before anything ran"
