"""Unit tests of the family schedule (labelloop.retraining.family_schedule)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelloop.retraining.family_schedule import FamilySchedule, ScheduleRule

FAMILIES = ["tfidf-lr", "cascade", "cascade-replace"]


def test_a_new_project_fits_every_family() -> None:
    assert FamilySchedule().due("p", FAMILIES, 50) == FAMILIES


def test_a_clear_loser_waits_for_the_labels_to_double_then_quadruple() -> None:
    schedule = FamilySchedule(ScheduleRule(close=0.05))
    schedule.record("p", 50, {"tfidf-lr": 0.80, "cascade": 0.70, "cascade-replace": 0.78})
    # cascade lost clearly (0.70 < 0.95 * 0.80); cascade-replace came within 5%: both others stay.
    assert schedule.due("p", FAMILIES, 75) == ["tfidf-lr", "cascade-replace"]
    assert schedule.due("p", FAMILIES, 99) == ["tfidf-lr", "cascade-replace"]
    assert schedule.due("p", FAMILIES, 100) == FAMILIES
    schedule.record("p", 100, {"tfidf-lr": 0.90, "cascade": 0.50, "cascade-replace": 0.50})
    # Second clear loss in a row for cascade: 4x its last trial; first for cascade-replace: 2x.
    assert schedule.due("p", FAMILIES, 199) == ["tfidf-lr"]
    assert schedule.due("p", FAMILIES, 200) == ["tfidf-lr", "cascade-replace"]
    assert schedule.due("p", FAMILIES, 399) == ["tfidf-lr", "cascade-replace"]
    assert schedule.due("p", FAMILIES, 400) == FAMILIES


def test_the_wait_is_capped() -> None:
    schedule = FamilySchedule(ScheduleRule(growth=2.0, max_growth=8.0))
    for labels in (50, 100, 400, 1000):  # four clear losses in a row: 2 ** 4 = 16, capped at 8
        schedule.record("p", labels, {"tfidf-lr": 0.9, "cascade": 0.1})
    assert "cascade" not in schedule.due("p", FAMILIES, 7999)
    assert "cascade" in schedule.due("p", FAMILIES, 8000)


def test_a_loser_that_comes_close_again_is_fitted_every_time() -> None:
    schedule = FamilySchedule(ScheduleRule(close=0.05))
    schedule.record("p", 50, {"tfidf-lr": 0.8, "cascade": 0.5})
    assert schedule.due("p", FAMILIES, 100) == FAMILIES
    schedule.record("p", 100, {"tfidf-lr": 0.8, "cascade": 0.82})  # cascade now wins, narrowly
    assert schedule.due("p", FAMILIES, 125) == FAMILIES
    schedule.record("p", 125, {"tfidf-lr": 0.8, "cascade": 0.9})  # tfidf-lr lost clearly
    assert schedule.due("p", FAMILIES, 150) == ["cascade", "cascade-replace"]


def test_by_default_any_loss_waits_and_a_tie_does_not() -> None:
    schedule = FamilySchedule()
    schedule.record("p", 300, {"tfidf-lr": 1.0, "cascade": 0.99, "cascade-replace": 1.0})
    assert schedule.due("p", FAMILIES, 400) == ["tfidf-lr", "cascade-replace"]
    assert schedule.due("p", FAMILIES, 600) == FAMILIES


def test_a_skipped_family_keeps_its_record() -> None:
    schedule = FamilySchedule()
    schedule.record("p", 50, {"tfidf-lr": 0.8, "cascade": 0.5})
    schedule.record("p", 75, {"tfidf-lr": 0.8})  # cascade skipped: its wait still counts from 50
    assert "cascade" in schedule.due("p", FAMILIES, 100)


def test_a_training_that_admits_nothing_refits_every_family() -> None:
    schedule = FamilySchedule()
    schedule.record("p", 50, {"tfidf-lr": 0.8, "cascade": 0.2, "cascade-replace": 0.2})
    assert schedule.due("p", FAMILIES, 75) == ["tfidf-lr"]
    schedule.record("p", 75, {"tfidf-lr": 0.0})
    assert schedule.due("p", FAMILIES, 76) == FAMILIES


def test_projects_are_apart() -> None:
    schedule = FamilySchedule()
    schedule.record("p", 50, {"tfidf-lr": 0.8, "cascade": 0.2})
    schedule.record("q", 50, {"tfidf-lr": 0.2, "cascade": 0.8})
    assert schedule.due("p", FAMILIES, 60) == ["tfidf-lr", "cascade-replace"]
    assert schedule.due("q", FAMILIES, 60) == ["cascade", "cascade-replace"]
    assert schedule.due("r", FAMILIES, 60) == FAMILIES


def test_growth_one_fits_every_family_every_time() -> None:
    schedule = FamilySchedule(ScheduleRule(growth=1.0))
    schedule.record("p", 50, {"tfidf-lr": 0.9, "cascade": 0.1})
    assert schedule.due("p", FAMILIES, 50) == FAMILIES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"close": 1.0}, "close"),
        ({"close": -0.1}, "close"),
        ({"growth": 0.5}, "growth"),
        ({"max_growth": 0.9}, "max_growth"),
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleRule(**kwargs)


@given(
    st.lists(
        st.dictionaries(st.sampled_from(FAMILIES), st.floats(0.0, 1.0), min_size=1),
        max_size=8,
    ),
    st.integers(1, 10_000),
)
def test_the_best_family_of_the_last_training_is_always_due_and_due_is_never_empty(
    trainings: list[dict[str, float]], labels: int
) -> None:
    schedule = FamilySchedule()
    for i, coverages in enumerate(trainings):
        schedule.record("p", 50 + i, coverages)
    due = schedule.due("p", FAMILIES, labels)
    assert due and set(due) <= set(FAMILIES)
    if trainings and max(trainings[-1].values()) > 0:
        assert max(trainings[-1], key=lambda k: trainings[-1][k]) in due
