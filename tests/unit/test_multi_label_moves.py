"""Multi-label thresholds moved both ways between trainings by people's answers, on exact match
(retraining/calibration.move_label_bounds): synthetic answer samples with known answers."""

import numpy as np
import pytest
from support import exact_match_precision

from labelloop.core.answers import LabelSetAnswer, answer_of, label_set_answer_of
from labelloop.core.thresholds import Threshold
from labelloop.human_tasks.api import describe_routing
from labelloop.retraining.calibration import ADMIT_NOTHING, NEVER_OFF, move_label_bounds
from labelloop.v1 import events_pb2


def exact_precision(
    upper: dict, lower: dict, probs: np.ndarray, truth: np.ndarray, labels: list[str]
) -> float:
    """What routing would auto-label with these pairs, and how much of it is exactly right."""
    return exact_match_precision(Threshold(label_upper=upper, label_lower=lower), probs, truth, labels)


def test_answers_tighten_pairs_that_admit_too_much() -> None:
    # Label "a": probability spread over [0.6, 1); from 0.8 up it is on, below that on for one
    # item in two: what the pair (0.6, 0.4) admits is about 0.75 right. Label "b" is off, safely.
    labels = ["a", "b"]
    p_a = np.linspace(0.6, 0.999, 200)
    truth_a = (p_a >= 0.8) | (np.arange(200) % 2 == 0)
    probs = np.column_stack([p_a, np.zeros(200)])
    truth = np.column_stack([truth_a, np.zeros(200, dtype=bool)])
    upper, lower = {"a": 0.6, "b": 0.7}, {"a": 0.4, "b": 0.3}
    assert exact_precision(upper, lower, probs, truth, labels) < 0.8

    move = move_label_bounds(upper, lower, probs, truth, labels, 0.95, confidence_level=0.9)

    assert move.direction == 1 and "below the target" in move.reason
    # The smallest safe step: the first one past the last wrong item (p_a just under 0.8).
    assert move.step == pytest.approx(0.2, abs=0.01)
    assert move.upper["a"] == pytest.approx(0.6 + move.step)
    assert move.lower["a"] == pytest.approx(0.4 - move.step)
    # Every label takes the same step, both sides ("b" now needs to be at most 0.3 - step).
    assert move.upper["b"] == pytest.approx(0.7 + move.step)
    assert move.lower["b"] == pytest.approx(0.3 - move.step)
    # The lowest step whose lower bound meets the target keeps one of the wrong items (99 of 100).
    assert exact_precision(move.upper, move.lower, probs, truth, labels) >= 0.98


def test_errors_spread_over_labels_tighten_though_each_label_alone_looks_right() -> None:
    # Five labels, 350 items; one item in seven has one label wrong, a different label each
    # time: each label is right on 97% of the items, but only 6 items in 7 are exactly right.
    # The wrong labels sit at 0.85 / 0.15, the right ones at 0.97 and above / 0.03 and below.
    labels = ["a", "b", "c", "d", "e"]
    rng = np.random.default_rng(3)
    truth = rng.random((350, 5)) < 0.4
    probs = np.where(truth, rng.uniform(0.97, 1.0, (350, 5)), rng.uniform(0.0, 0.03, (350, 5)))
    wrong = np.arange(0, 350, 7)
    for n, i in enumerate(wrong):
        j = n % 5
        probs[i, j] = 0.15 if truth[i, j] else 0.85
    per_label = [np.mean((probs[:, j] >= 0.5) == truth[:, j]) for j in range(5)]
    assert min(per_label) >= 0.97
    upper, lower = dict.fromkeys(labels, 0.8), dict.fromkeys(labels, 0.2)
    assert exact_precision(upper, lower, probs, truth, labels) == pytest.approx(6 / 7, abs=0.01)

    move = move_label_bounds(upper, lower, probs, truth, labels, 0.95)

    assert move.direction == 1
    # Past 0.85 / 0.15 (a step of 0.05) the wrong ones are out and every item left is exactly right.
    assert 0.05 < move.step <= 0.2
    assert exact_precision(move.upper, move.lower, probs, truth, labels) == 1.0


def test_answers_loosen_pairs_far_stricter_than_the_target_but_never_overlap_them() -> None:
    # A perfect model (on exactly when p >= 0.5) held to pairs (0.95, 0.05): people answered
    # everything in between (probability 1). The answers loosen the pairs to where they meet.
    labels = ["a", "b"]
    rng = np.random.default_rng(4)
    probs = rng.uniform(0.0, 1.0, (400, 2))
    truth = probs >= 0.5
    upper, lower = dict.fromkeys(labels, 0.95), dict.fromkeys(labels, 0.05)

    move = move_label_bounds(upper, lower, probs, truth, labels, 0.9)

    assert move.direction == -1 and "meets the target" in move.reason
    for label in labels:
        assert move.upper[label] >= move.lower[label]  # never both "on" and "off"
        assert move.upper[label] <= 0.6
    assert exact_precision(move.upper, move.lower, probs, truth, labels) == 1.0


def test_auto_labels_right_less_than_half_the_time_turn_every_label_off() -> None:
    labels = ["a", "b"]
    probs = np.column_stack([np.linspace(0.7, 1.0, 100), np.full(100, 0.01)])
    truth = np.column_stack([np.zeros(100, dtype=bool), np.zeros(100, dtype=bool)])  # "a" is never on

    move = move_label_bounds({"a": 0.7, "b": 0.9}, {"a": 0.3, "b": 0.1}, probs, truth, labels, 0.95)

    assert move.direction == 1 and move.step is None
    assert move.upper == dict.fromkeys(labels, ADMIT_NOTHING)
    assert move.lower == dict.fromkeys(labels, NEVER_OFF)


def test_too_few_answers_or_a_consistent_sample_move_nothing() -> None:
    labels = ["a"]
    probs = np.linspace(0.6, 1.0, 15)[:, None]
    truth = np.zeros((15, 1), dtype=bool)  # all wrong, but only 15 answers
    move = move_label_bounds({"a": 0.6}, {"a": 0.4}, probs, truth, labels, 0.95, min_effective=20)
    assert not move.moved and move.upper == {"a": 0.6} and move.lower == {"a": 0.4}

    # 0.95 right above the pair and nothing better below it: kept.
    rng = np.random.default_rng(5)
    probs = rng.uniform(0.0, 1.0, (400, 1))
    truth = np.where(probs >= 0.5, rng.random((400, 1)) < 0.95, rng.random((400, 1)) < 0.5)
    move = move_label_bounds({"a": 0.8}, {"a": NEVER_OFF}, probs, truth, labels, 0.95)
    assert not move.moved, move.reason


def test_weights_count_the_audited_items_at_their_selection_probability() -> None:
    # The same 40 wrong auto-labels: as audits at 10% (weight 10) against 400 right answers at
    # probability 1 they make the admitted precision 0.5, not 0.91, and tighten the pairs.
    labels = ["a"]
    probs = np.concatenate([np.full(40, 0.7), np.linspace(0.75, 1.0, 400)])[:, None]
    truth = np.concatenate([np.zeros(40, dtype=bool), np.ones(400, dtype=bool)])[:, None]
    unweighted = move_label_bounds({"a": 0.65}, {"a": NEVER_OFF}, probs, truth, labels, 0.9)
    weighted = move_label_bounds(
        {"a": 0.65},
        {"a": NEVER_OFF},
        probs,
        truth,
        labels,
        0.9,
        weights=np.r_[np.full(40, 10.0), np.ones(400)],
    )
    assert unweighted.direction == 0
    assert weighted.direction == 1 and weighted.precision == pytest.approx(0.5)
    assert weighted.upper["a"] > 0.7


def test_bad_input_is_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="must both be"):
        move_label_bounds({}, {}, np.zeros((3, 2)), np.zeros((3, 1), dtype=bool), ["a", "b"], 0.9)
    with pytest.raises(ValueError, match="probabilities"):
        move_label_bounds({}, {}, np.full((3, 1), 1.5), np.zeros((3, 1), dtype=bool), ["a"], 0.9)
    with pytest.raises(ValueError, match="weights"):
        move_label_bounds(
            {}, {}, np.zeros((3, 1)), np.zeros((3, 1), dtype=bool), ["a"], 0.9, weights=[1, 0, 1]
        )


def test_a_side_pushed_past_zero_or_one_is_never_confident() -> None:
    labels = ["a"]
    p_a = np.linspace(0.6, 0.999, 200)
    truth = ((p_a >= 0.8) | (np.arange(200) % 2 == 0))[:, None]
    move = move_label_bounds({"a": 0.6}, {"a": 0.1}, p_a[:, None], truth, labels, 0.95)
    assert move.direction == 1 and move.step > 0.1
    assert move.lower == {"a": NEVER_OFF}  # 0.1 - step < 0: "off" is never confident
    assert move.upper["a"] == pytest.approx(0.6 + move.step)


def routed_task(reason: int, probability: float) -> events_pb2.TaskRouted:
    task = events_pb2.TaskRouted(task_id="x", reason=reason, answer_probability=probability)
    task.prediction.model_version = 4
    for label, p in (("a", 0.92), ("b", 0.03), ("c", 0.97)):
        task.prediction.scores.add(label=label, probability=p)
    return task


def test_a_multi_label_answer_keeps_every_labels_probability_and_the_consensus() -> None:
    annotation = events_pb2.AnnotationSubmitted(item_id="x", project_id="p", labels=["a", "c"])
    describe_routing(annotation, routed_task(events_pb2.TASK_REASON_AUDIT, 0.04), multi=True)
    assert [(s.label, round(s.probability, 2)) for s in annotation.predicted_scores] == [
        ("a", 0.92),
        ("b", 0.03),
        ("c", 0.97),
    ]
    assert label_set_answer_of(annotation) is None  # no consensus yet: completes nothing
    annotation.consensus_labels.extend(["a", "c"])
    answer = label_set_answer_of(annotation)
    assert answer is not None
    assert (answer.model_version, answer.labels, answer.weight, answer.audit) == (4, ("a", "c"), 25.0, True)
    assert answer.probabilities == pytest.approx({"a": 0.92, "b": 0.03, "c": 0.97})
    assert LabelSetAnswer.decode(answer.encode()) == answer
    assert answer_of(annotation) is None  # never also a single-label sample point
    # The audit's verdict is exact match under the pairs: "a" and "c" on, "b" off.
    pairs = Threshold(label_upper=dict.fromkeys("abc", 0.9), label_lower=dict.fromkeys("abc", 0.1))
    assert answer.agrees(pairs)
    assert not answer.agrees(replace_upper(pairs, "a", 0.95))  # "a" no longer turned on: disagrees

    # People agreeing that no label applies complete the task too; a single-label project's
    # annotation carries no scores and stays a single-label sample point.
    none = events_pb2.AnnotationSubmitted(item_id="y", project_id="p", consensus_no_label=True)
    describe_routing(none, routed_task(events_pb2.TASK_REASON_UNCERTAIN, 1.0), multi=True)
    empty = label_set_answer_of(none)
    assert empty is not None and empty.labels == () and empty.weight == 1.0 and not empty.audit
    single = events_pb2.AnnotationSubmitted(item_id="z", project_id="p", consensus_labels=["c"])
    describe_routing(single, routed_task(events_pb2.TASK_REASON_UNCERTAIN, 1.0))
    assert not single.predicted_scores and label_set_answer_of(single) is None
    assert answer_of(single) is not None and answer_of(single).predicted_label == "c"


def replace_upper(threshold: Threshold, label: str, value: float) -> Threshold:
    return Threshold(label_upper={**threshold.label_upper, label: value}, label_lower=threshold.label_lower)


def test_pairs_that_admit_nothing_loosen_to_pairs_calibrated_on_the_answers() -> None:
    # The training's calibration admitted nothing, so people answered every item (probability 1);
    # the model is exactly right beyond 0.8 / 0.2 on both labels, a coin flip in between.
    labels = ["a", "b"]
    rng = np.random.default_rng(6)
    probs = rng.uniform(0.0, 1.0, (500, 2))
    truth = np.where(np.abs(probs - 0.5) >= 0.3, probs >= 0.5, rng.random((500, 2)) < 0.5)
    nothing_up, nothing_low = dict.fromkeys(labels, ADMIT_NOTHING), dict.fromkeys(labels, NEVER_OFF)

    move = move_label_bounds(nothing_up, nothing_low, probs, truth, labels, 0.95)

    assert move.direction == -1 and move.step is None and "calibrated on the answers" in move.reason
    for label in labels:
        assert 0.7 <= move.upper[label] <= 0.9 and 0.1 <= move.lower[label] <= 0.3
    assert exact_precision(move.upper, move.lower, probs, truth, labels) >= 0.95
    # Too few answers, or answers that are coin flips everywhere: still nothing.
    assert not move_label_bounds(nothing_up, nothing_low, probs[:15], truth[:15], labels, 0.95).moved
    flips = rng.random((500, 2)) < 0.5
    assert not move_label_bounds(nothing_up, nothing_low, probs, flips, labels, 0.95).moved
