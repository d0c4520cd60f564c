"""Noise-corrected calibration scores (core/consensus_noise.py): known cases with computable
answers, and a simulated project whose people are 10% wrong, three per task."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from labelloop.core.answers import Answer, AnswerSample
from labelloop.core.consensus_noise import (
    MIN_PAIRS,
    MIN_PROBABILITY,
    VoteTally,
    consensus_probability,
    corrected_scores,
    one_coin_accuracy,
)
from labelloop.core.settings import load
from labelloop.core.stream import Batch, Event
from labelloop.core.topics import ANNOTATIONS
from labelloop.retraining.calibration import calibrate_threshold
from labelloop.retraining.dataset import HumanLabel, LabeledSet
from labelloop.retraining.service import RetrainingService
from labelloop.retraining.settings import RetrainingSettings
from labelloop.v1 import events_pb2


@pytest.mark.parametrize("k", [2, 3, 5, 20])
@pytest.mark.parametrize("a", [0.6, 0.8, 0.9, 0.99, 1.0])
def test_accuracy_solves_the_pair_agreement(k: int, a: float) -> None:
    s = a * a + (1 - a) ** 2 / (k - 1)
    pairs = 1_000_000
    assert one_coin_accuracy(round(s * pairs), pairs, k) == pytest.approx(a, abs=1e-3)


def test_accuracy_needs_pairs_and_is_never_below_chance() -> None:
    assert one_coin_accuracy(MIN_PAIRS - 1, MIN_PAIRS - 1, 2) is None
    assert one_coin_accuracy(10, MIN_PAIRS, 2) == 0.5  # agreement below chance: chance
    assert one_coin_accuracy(MIN_PAIRS, MIN_PAIRS, 2) == 1.0
    with pytest.raises(ValueError, match="agreeing_pairs"):
        one_coin_accuracy(MIN_PAIRS + 1, MIN_PAIRS, 2)


def test_label_probability_is_the_posterior_of_its_votes() -> None:
    # two classes, a = 0.9: a 2-1 vote is right 0.81 * 0.1 / (0.81 * 0.1 + 0.9 * 0.01) = 0.9 of the time
    assert consensus_probability((2, 1), 0.9, 2) == pytest.approx(0.9)
    assert consensus_probability((3,), 0.9, 2) == pytest.approx(729 / 730)
    assert consensus_probability((1,), 0.9, 2) == pytest.approx(0.9)  # one answer: its accuracy
    # five classes, a = 0.9: L = log(0.9 * 4 / 0.1) = log 36; three labels nobody chose
    assert consensus_probability((2, 1), 0.9, 5) == pytest.approx(36**2 / (36**2 + 36 + 3))
    # unknown or perfect accuracy, unknown votes: the label is taken as true
    assert consensus_probability((2, 1), None, 2) == 1.0
    assert consensus_probability((2, 1), 1.0, 2) == 1.0
    assert consensus_probability((), 0.9, 2) == 1.0
    # near chance the posterior is floored: the score's spread stays bounded
    assert consensus_probability((2, 1), 0.55, 2) == MIN_PROBABILITY
    with pytest.raises(ValueError, match="consensus count"):
        consensus_probability((1, 2), 0.9, 2)


def test_scores_are_right_wrong_without_noise_and_unbiased_with_it() -> None:
    assert corrected_scores([True, False], [1.0, 1.0]).tolist() == [1.0, 0.0]
    agree, disagree = corrected_scores([True, False], [0.9, 0.9])
    assert (agree, disagree) == (pytest.approx(1.125), pytest.approx(-0.125))
    # E[score] = p for a prediction right with probability p, the label right with probability pi
    p, pi = 0.95, 0.9
    measured = p * pi + (1 - p) * (1 - pi)
    assert measured * agree + (1 - measured) * disagree == pytest.approx(p)


def _simulated_project(n_classes: int, n: int = 6000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """People right 90% of the time (a wrong answer any other label), three per task and one more
    on a tie; a model right 95% of the time, independently. Returns truth, consensus, prediction
    and each label's probability from the tally."""
    rng = np.random.default_rng(seed)
    tally = VoteTally()

    def answer(true: int) -> str:
        if rng.random() < 0.9:
            return str(true)
        return str((true + int(rng.integers(1, n_classes))) % n_classes)

    truth = rng.integers(0, n_classes, n)
    consensus = np.zeros(n, dtype=np.int64)
    for i in range(n):
        answers = [answer(truth[i]) for _ in range(3)]
        while (top := Counter(answers).most_common())[1:] and top[0][1] == top[1][1]:
            answers.append(answer(truth[i]))
        for j, given in enumerate(answers):
            last = j == len(answers) - 1
            tally.add(f"t{i}", f"l{j}", given, f"i{i}", top[0][0] if last else None)
        consensus[i] = int(top[0][0])
    prediction = np.where(rng.random(n) < 0.95, truth, (truth + rng.integers(1, n_classes, n)) % n_classes)
    accuracy = one_coin_accuracy(tally.agreeing_pairs, tally.pairs, n_classes)
    assert accuracy == pytest.approx(0.9, abs=0.01)
    probability = np.array(
        [
            consensus_probability(tally.votes(f"i{i}", str(consensus[i])), accuracy, n_classes)
            for i in range(n)
        ]
    )
    return truth, consensus, prediction, probability


def test_two_classes_measured_precision_is_corrected_to_the_truth() -> None:
    truth, consensus, prediction, probability = _simulated_project(2)
    true_precision = float(np.mean(prediction == truth))
    measured = float(np.mean(prediction == consensus))
    corrected = float(np.mean(corrected_scores(prediction == consensus, probability)))
    assert measured < true_precision - 0.015  # scored against noisy labels: about 2.5 points low
    assert corrected == pytest.approx(true_precision, abs=0.006)


def test_more_classes_are_corrected_on_the_safe_side() -> None:
    truth, consensus, prediction, probability = _simulated_project(5)
    true_precision = float(np.mean(prediction == truth))
    measured = float(np.mean(prediction == consensus))
    corrected = float(np.mean(corrected_scores(prediction == consensus, probability)))
    # r = 1 overstates how often a wrong label meets a wrong prediction: a smaller correction
    assert measured < corrected <= true_precision + 0.004
    assert corrected == pytest.approx(true_precision, abs=0.008)


def test_a_threshold_on_corrected_scores_admits_what_the_truth_allows() -> None:
    # Confidences in [0.5, 1]; a prediction is right with probability equal to its confidence, so
    # the truth's threshold for 0.95 precision lies near 0.9. Scored against noisy consensus the
    # raw threshold sits higher; on corrected scores it comes back, with a wider bound.
    rng = np.random.default_rng(1)
    n = 20_000
    conf = rng.uniform(0.5, 1.0, n)
    right = rng.random(n) < conf
    label_right = rng.random(n) < 0.972  # two classes, a 3-person majority at a = 0.9
    agrees = right == label_right
    probability = np.full(n, 0.972)
    truth = calibrate_threshold(conf, right, 0.95)
    raw = calibrate_threshold(conf, agrees, 0.95)
    corrected = calibrate_threshold(conf, corrected_scores(agrees, probability), 0.95)
    assert raw.threshold > truth.threshold + 0.02
    assert abs(corrected.threshold - truth.threshold) < 0.015


def test_noisy_labels_need_more_of_them_for_the_same_bound() -> None:
    # 70 predictions all agreeing with their labels: plain right/wrong, the exact Clopper-Pearson
    # bound at 95% passes 0.95 from 59 items. Labels right with probability 0.9 spread each score by
    # 1 / (2 * 0.9 - 1) = 1.25: the effective size is 70 / 1.5625 = 44.8, not enough.
    conf = np.linspace(0.99, 0.999, 70)
    agrees = np.ones(70, dtype=bool)
    assert calibrate_threshold(conf, agrees, 0.95).threshold == pytest.approx(0.99)
    assert calibrate_threshold(conf, corrected_scores(agrees, np.full(70, 0.9)), 0.95).admits_nothing


def test_tally_counts_each_answer_once() -> None:
    tally = VoteTally()
    tally.add("t1", "l1", "a", "x", None)
    tally.add("t1", "l1", "a", "x", None)  # re-sent under the same lease
    tally.add("t1", "l2", "b", "x", None)
    tally.add("t1", "l3", "a", "x", "a")
    assert (tally.agreeing_pairs, tally.pairs) == (1, 3)
    assert tally.votes("x", "a") == (2, 1)
    assert tally.votes("x", "b") == ()  # a review changed the label: its votes say nothing
    for lease, given in (("l1", "a"), ("l2", "b"), ("l3", "a")):  # the task delivered again
        tally.add("t1", lease, given, "x", "a" if lease == "l3" else None)
    assert (tally.agreeing_pairs, tally.pairs) == (1, 3)
    assert tally.votes("unseen", "a") == ()


def _answer(
    task: str, item: str, lease: str, given: str, consensus: str | None
) -> events_pb2.AnnotationSubmitted:
    event = events_pb2.AnnotationSubmitted(
        task_id=task, item_id=item, project_id="p", annotator_id=lease, lease_id=lease, labels=[given]
    )
    if consensus is not None:
        event.consensus_labels.append(consensus)
    return event


def test_labeled_set_gives_each_label_its_probability() -> None:
    labeled = LabeledSet(0.0)
    for i in range(20):  # 20 tasks of two classes, one in four split 2-1
        split = i % 4 == 0
        labeled.apply_answer(_answer(f"t{i}", f"x{i}", "l1", "a", None))
        labeled.apply_answer(_answer(f"t{i}", f"x{i}", "l2", "b" if split else "a", None))
        labeled.apply_answer(_answer(f"t{i}", f"x{i}", "l3", "a", "a"))
        labeled._add(HumanLabel(f"x{i}", "text", "a"))
    snapshot = labeled.snapshot()
    assert (snapshot.agreeing_pairs, snapshot.pairs) == (15 * 3 + 5, 60)
    probabilities = snapshot.label_probabilities(snapshot.train, 2)
    assert probabilities is not None
    a = (1 + math.sqrt(1 - 2 + 2 * 50 / 60)) / 2
    assert probabilities[0] == pytest.approx(consensus_probability((2, 1), a, 2))
    assert probabilities[1] == pytest.approx(consensus_probability((3,), a, 2))
    assert labeled.label_probability("x0", "a", 2) == pytest.approx(probabilities[0])
    assert labeled.label_probability("x0", "b", 2) == 1.0  # not the label people gave
    # one annotator per task: no pairs, no correction
    single = LabeledSet(0.0)
    single.apply_answer(_answer("t", "y", "l1", "a", "a"))
    single._add(HumanLabel("y", "text", "a"))
    assert single.snapshot().label_probabilities(single.snapshot().train, 2) is None


def test_answer_keeps_its_label_probability_in_redis_form() -> None:
    noisy = Answer(3, 0.97, True, 1.0, False, "spam", 0.9)
    assert Answer.decode(noisy.encode()) == noisy
    plain = Answer(3, 0.97, False, 1.0, True, "ham")
    assert plain.encode() == "3|0.97|0|1.0|1|ham"  # as before the probability existed
    assert Answer.decode(plain.encode()).label_probability == 1.0


class _Projects:
    def get(self, pid: str) -> Any:
        return SimpleNamespace(spec=SimpleNamespace(labels=["ham", "spam"]))


class _Ledger:
    def __init__(self) -> None:
        self.recorded: dict[str, Answer] = {}

    def record(self, pid: str, item_id: str, answer: Answer) -> None:
        self.recorded[item_id] = answer


class _Lifecycle:
    def __init__(self) -> None:
        self.moved: list[str] = []

    def move_threshold(self, pid: str, batch: Batch) -> None:
        self.moved.append(pid)


def test_the_service_records_each_answer_with_its_label_probability() -> None:
    ledger, lifecycle = _Ledger(), _Lifecycle()
    service = RetrainingService(
        load(RetrainingSettings, environ={}),
        projects=_Projects(),  # type: ignore[arg-type]
        registry=SimpleNamespace(by_alias=lambda pid, alias: None),  # type: ignore[arg-type]
        lifecycle=lifecycle,  # type: ignore[arg-type]
        trainer=None,  # type: ignore[arg-type]
        answers=ledger,  # type: ignore[arg-type]
    )
    try:
        events = []
        for i in range(16):  # three people per task, every other task split 2-1
            given = ["spam", "ham" if i % 2 else "spam", "spam"]
            for j, label in enumerate(given):
                event = _answer(f"t{i}", f"x{i}", f"l{i}.{j}", label, "spam" if j == 2 else None)
                event.model_version, event.predicted_label, event.predicted_confidence = 3, "spam", 0.9
                events.append(Event(ANNOTATIONS, event, None, 0, len(events), b"", 0))
        service.handle(Batch(events))
    finally:
        service.close()
    assert sorted(ledger.recorded) == sorted(f"x{i}" for i in range(16)) and lifecycle.moved == ["p"]
    # Tasks 0-8 complete with fewer than MIN_PAIRS (30) pairs of answers: labels taken as true.
    assert all(ledger.recorded[f"x{i}"].label_probability == 1.0 for i in range(9))
    labeled = service.state("p").labeled
    assert labeled.pairs_of_answers() == 48
    for i in range(9, 16):  # from then on each carries its posterior, split votes the lowest
        expected = labeled.label_probability(f"x{i}", "spam", 2) if i == 15 else None
        probability = ledger.recorded[f"x{i}"].label_probability
        assert probability < 1.0 and (
            i % 2 == 0 or probability < ledger.recorded[f"x{i - 1}"].label_probability
        )
        if expected is not None:  # the last one was recorded with today's accuracy
            assert probability == pytest.approx(expected)


def test_audited_precision_is_corrected_for_noisy_people() -> None:
    # 40 audits, 36 agreeing: 0.9 agreed. With labels right 0.9 of the time that is
    # (0.9 - 0.1) / 0.8 = 1.0 right (clipped to 1); with labels taken as true, 0.9.
    correct = np.array([True] * 36 + [False] * 4)
    sample = AnswerSample(
        confidences=np.full(40, 0.9),
        correct=correct,
        weights=np.full(40, 50.0),
        predicted_labels=["spam"] * 40,
        audits_agreeing=36,
        audits=40,
        label_probabilities=np.full(40, 0.9),
        audit_mask=np.ones(40, dtype=bool),
    )
    assert sample.audited_precision() == 1.0
    assert replace(sample, label_probabilities=np.full(40, 0.95)).audited_precision() == pytest.approx(
        (0.9 - 0.05) / 0.9
    )
    assert replace(sample, label_probabilities=None).audited_precision() == pytest.approx(0.9)
    assert replace(sample, audits=0, audits_agreeing=0).audited_precision() == 0.0
    # only the audits count: an uncertain item's wrong answer does not lower it
    mixed = replace(sample, audit_mask=np.array([True] * 36 + [False] * 4), audits=36, audits_agreeing=36)
    assert mixed.audited_precision() == 1.0
