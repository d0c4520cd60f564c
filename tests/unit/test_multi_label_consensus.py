"""Consensus per label for multi-label tasks (k annotators)."""

import pytest

from labelloop.human_tasks.consensus import decode_labels, encode_labels, per_label_majority

LABELS = ["sports", "politics", "tech", "health"]


def test_k3_each_label_follows_its_own_majority() -> None:
    answers = [("sports", "tech"), ("sports",), ("sports", "tech", "health")]
    verdict = per_label_majority(answers, LABELS)
    # sports 3/3 on, politics 0/3 off, tech 2/3 on, health 1/3 off
    assert verdict.labels == ("sports", "tech")
    assert not verdict.tie
    assert verdict.agreement == pytest.approx(1 / 3)  # only the first answer is exactly the verdict


def test_k3_no_label_with_a_majority_is_an_empty_verdict() -> None:
    verdict = per_label_majority([("sports",), ("tech",), ()], LABELS)
    assert verdict.labels == ()
    assert verdict.agreement == pytest.approx(1 / 3)


def test_the_verdict_follows_the_project_label_order() -> None:
    verdict = per_label_majority([("tech", "sports"), ("tech", "sports"), ("sports",)], LABELS)
    assert verdict.labels == ("sports", "tech")


def test_an_even_split_on_any_label_is_a_tie_naming_it() -> None:
    verdict = per_label_majority([("sports", "tech"), ("sports",)], LABELS)
    assert verdict.tie and verdict.labels is None
    assert verdict.tied_labels == ("tech",)
    # one more annotator settles it
    assert per_label_majority([("sports", "tech"), ("sports",), ("tech",)], LABELS).labels == (
        "sports",
        "tech",
    )


def test_one_annotator_decides_alone() -> None:
    assert per_label_majority([("health",)], LABELS).labels == ("health",)
    with pytest.raises(ValueError):
        per_label_majority([], LABELS)


def test_answers_are_stored_in_the_label_order_and_read_back() -> None:
    assert encode_labels(["tech", "sports"], LABELS) == "sports|tech"
    assert decode_labels("sports|tech") == ("sports", "tech")
    assert encode_labels([], LABELS) == "" and decode_labels("") == ()
