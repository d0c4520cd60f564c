"""Unit tests of the simulated annotator's decision (labelloop.bench.annotators)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from labelloop.bench.annotators import SimulatedAnnotator, simulated_answer

LABELS = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("error_rate", [0.0, 0.1, 0.3, 1.0])
def test_error_rate_matches_and_wrong_answers_are_uniform_other_labels(error_rate: float) -> None:
    rng = random.Random(7)
    n = 20_000
    wrong: Counter[str] = Counter()
    for _ in range(n):
        answer = simulated_answer("c", LABELS, error_rate, rng)
        assert answer in LABELS
        if answer != "c":
            wrong[answer] += 1
    errors = sum(wrong.values())
    # Binomial: within 4 standard deviations of n * E.
    sd = math.sqrt(n * error_rate * (1 - error_rate))
    assert abs(errors - n * error_rate) <= 4 * sd + 1e-9
    assert "c" not in wrong
    if errors:
        assert set(wrong) == {"a", "b", "d", "e"}
        expected = errors / 4
        for count in wrong.values():
            assert abs(count - expected) <= 4 * math.sqrt(expected * 0.75)


def test_error_rate_one_never_returns_the_true_label() -> None:
    rng = random.Random(1)
    assert all(simulated_answer("x", ["x", "y"], 1.0, rng) == "y" for _ in range(200))


def test_reproducible_with_a_seed_and_independent_between_annotators() -> None:
    one = SimulatedAnnotator("ann-1", LABELS, error_rate=0.3, seed=5)
    again = SimulatedAnnotator("ann-1", LABELS, error_rate=0.3, seed=5)
    other = SimulatedAnnotator("ann-2", LABELS, error_rate=0.3, seed=5)
    a = [one.answer("a") for _ in range(300)]
    assert a == [again.answer("a") for _ in range(300)]
    assert a != [other.answer("a") for _ in range(300)]


@pytest.mark.parametrize(
    ("true_label", "labels", "error_rate", "message"),
    [
        ("a", LABELS, 1.5, "error_rate"),
        ("a", LABELS, -0.1, "error_rate"),
        ("z", LABELS, 0.1, "not in the label set"),
        ("a", ["a"], 0.1, "two distinct labels"),
    ],
)
def test_bad_arguments(true_label: str, labels: list[str], error_rate: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulated_answer(true_label, labels, error_rate, random.Random(0))


def test_single_label_set_is_fine_when_perfect() -> None:
    assert simulated_answer("a", ["a"], 0.0, random.Random(0)) == "a"
