"""k-annotator majority and ties."""

import pytest

from labelloop.human_tasks.consensus import majority


def test_single_answer_is_final() -> None:
    v = majority(["spam"])
    assert (v.label, v.tie, v.agreement) == ("spam", False, 1.0)


def test_majority_of_three() -> None:
    v = majority(["spam", "ham", "spam"])
    assert (v.label, v.tie) == ("spam", False)
    assert v.agreement == pytest.approx(2 / 3)


def test_a_tie_needs_one_more() -> None:
    v = majority(["spam", "ham"])
    assert v.tie and v.label is None
    assert majority(["a", "b", "c"]).tie


def test_no_answers_is_an_error() -> None:
    with pytest.raises(ValueError):
        majority([])
