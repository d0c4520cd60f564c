"""Unit tests of threshold calibration (labelloop.retraining.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.retraining.calibration import (
    ADMIT_NOTHING,
    calibrate_threshold,
    coverage_at_precision,
    expected_calibration_error,
    precision_lower_bound,
    precision_upper_bound,
    tighten_from_audits,
)


def calibrated_scores(
    rng: np.random.Generator, n: int, a: float = 4.0, b: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidences in [0.5, 1] that are perfectly calibrated: P(correct | c) = c."""
    conf = 0.5 + 0.5 * rng.beta(a, b, size=n)
    correct = rng.random(n) < conf
    return conf, correct


@pytest.mark.parametrize(("target", "a", "n"), [(0.9, 4.0, 2_000), (0.95, 4.0, 2_000), (0.98, 8.0, 4_000)])
def test_threshold_meets_target_precision_on_fresh_data_across_seeds(target: float, a: float, n: int) -> None:
    realized = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        conf, correct = calibrated_scores(rng, n, a=a)
        cal = calibrate_threshold(conf, correct, target)
        assert cal.threshold <= 1.0, "thousands of calibrated items must allow some auto-labeling"
        fresh_conf, fresh_correct = calibrated_scores(rng, 50_000, a=a)
        admitted = fresh_conf >= cal.threshold
        assert admitted.sum() > 500
        realized.append(fresh_correct[admitted].mean())
    realized_arr = np.array(realized)
    # The 95% lower bound gives a margin: on average above the target, below it in about 5% of
    # the seeds, and then by less than a point.
    assert realized_arr.mean() >= target
    assert (realized_arr < target).mean() <= 0.15
    assert realized_arr.min() >= target - 0.01
    # ... but not an absurd one: the margin costs at most 2 points of precision on average.
    assert realized_arr.mean() <= target + 0.02


def test_coverage_and_bounds_reported() -> None:
    rng = np.random.default_rng(3)
    conf, correct = calibrated_scores(rng, 5_000)
    cal = calibrate_threshold(conf, correct, 0.95)
    assert cal.n == 5_000
    assert cal.expected_coverage == pytest.approx((conf >= cal.threshold).mean())
    assert cal.precision is not None and cal.precision_lower_bound is not None
    assert cal.precision_lower_bound >= 0.95
    assert cal.precision >= cal.precision_lower_bound
    assert not cal.admits_nothing
    # The lowest such threshold: one step lower the bound fails.
    below = np.sort(conf[conf < cal.threshold])[-1]
    admitted = conf >= below
    assert precision_lower_bound(correct[admitted].sum(), admitted.sum()) < 0.95


@pytest.mark.parametrize("n", [0, 10, 49])
def test_too_few_labels_admit_nothing(n: int) -> None:
    cal = calibrate_threshold(np.ones(n), np.ones(n, dtype=bool), 0.95)
    assert cal.threshold == ADMIT_NOTHING > 1.0
    assert cal.admits_nothing and cal.expected_coverage == 0.0 and cal.n == n


def test_perfect_but_small_set_admits_nothing_at_high_target() -> None:
    # 58 all-correct items: the Clopper-Pearson lower bound is 0.05**(1/58) < 0.95.
    cal = calibrate_threshold(np.linspace(0.6, 1.0, 58), np.ones(58, dtype=bool), 0.95, min_samples=1)
    assert cal.threshold > 1.0
    cal = calibrate_threshold(np.linspace(0.6, 1.0, 59), np.ones(59, dtype=bool), 0.95, min_samples=1)
    assert cal.threshold == pytest.approx(0.6)


def test_a_useless_model_admits_nothing() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 3_000)
    correct = rng.random(3_000) < 0.5  # confidence says nothing
    assert calibrate_threshold(conf, correct, 0.95).threshold == ADMIT_NOTHING


def test_ties_are_admitted_together() -> None:
    conf = np.array([0.9] * 100 + [0.8] * 100)
    correct = np.array([True] * 100 + [False] * 100)
    cal = calibrate_threshold(conf, correct, 0.9)
    assert cal.threshold == 0.9
    assert cal.expected_coverage == 0.5


def test_per_class_thresholds_where_data_allows() -> None:
    rng = np.random.default_rng(11)
    n = 3_000
    conf_easy, ok_easy = calibrated_scores(rng, n, a=8.0)
    conf_hard = rng.uniform(0.5, 1.0, n)
    ok_hard = rng.random(n) < conf_hard - 0.2  # overconfident class
    conf = np.concatenate([conf_easy, conf_hard, [0.99] * 10])
    ok = np.concatenate([ok_easy, ok_hard, [True] * 10])
    predicted = ["easy"] * n + ["hard"] * n + ["rare"] * 10
    cal = calibrate_threshold(conf, ok, 0.9, predicted_labels=predicted, min_class_samples=100)
    assert set(cal.class_thresholds) == {"easy", "hard"}
    assert cal.class_thresholds["easy"] < cal.threshold
    assert cal.class_thresholds["hard"] > cal.threshold
    assert cal.threshold_for("rare") == cal.threshold
    easy = conf_easy >= cal.class_thresholds["easy"]
    assert ok_easy[easy].mean() >= 0.9


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        calibrate_threshold([0.5, 0.6], [True], 0.95)
    with pytest.raises(ValueError, match="probabilities"):
        calibrate_threshold([1.5], [True], 0.95, min_samples=1)
    with pytest.raises(ValueError, match="target_precision"):
        calibrate_threshold([0.5], [True], 1.5)


def test_tightening_when_audits_show_precision_below_target() -> None:
    decision = tighten_from_audits(0.8, audited_correct=80, audited_total=100, target_precision=0.95)
    assert decision.tightened
    assert decision.threshold == pytest.approx(0.9)
    assert decision.audited_precision == pytest.approx(0.8)
    assert "below the target" in decision.reason


def test_no_tightening_on_noise_or_too_few_audits() -> None:
    # 47/50 = 0.94: below 0.95 as a point estimate, but well within noise.
    assert not tighten_from_audits(0.8, 47, 50, 0.95).tightened
    # 3/10 is bad, but 10 audits are fewer than the minimum.
    kept = tighten_from_audits(0.8, 3, 10, 0.95)
    assert not kept.tightened and kept.threshold == 0.8
    assert not tighten_from_audits(0.8, 0, 0, 0.95).tightened
    assert not tighten_from_audits(0.8, 100, 100, 0.95).tightened


def test_tightening_to_nothing_when_audits_are_terrible() -> None:
    assert tighten_from_audits(0.7, 10, 40, 0.95).threshold == ADMIT_NOTHING
    assert tighten_from_audits(ADMIT_NOTHING, 0, 40, 0.95).threshold == ADMIT_NOTHING


def test_repeated_tightening_is_monotone() -> None:
    threshold = 0.6
    for _ in range(5):
        decision = tighten_from_audits(threshold, 150, 200, 0.95)
        assert decision.threshold > threshold
        threshold = decision.threshold
    assert threshold <= 1.0


def test_binomial_bounds() -> None:
    assert float(precision_lower_bound(0, 10)) == 0.0
    assert float(precision_lower_bound(10, 10)) == pytest.approx(0.05 ** (1 / 10))
    assert float(precision_upper_bound(10, 10)) == 1.0
    assert float(precision_upper_bound(0, 10)) == pytest.approx(1 - 0.05 ** (1 / 10))
    lower = float(precision_lower_bound(90, 100))
    upper = float(precision_upper_bound(90, 100))
    assert 0.83 < lower < 0.9 < upper < 0.95


def test_expected_calibration_error() -> None:
    rng = np.random.default_rng(5)
    n = 40_000
    top = rng.uniform(0.5, 1.0, n)
    correct = rng.random(n) < top
    labels = np.where(correct, 0, 1)
    probs = np.column_stack([top, 1 - top])
    assert expected_calibration_error(probs, labels) < 0.02
    # Always 0.9 confident, right half the time: ECE = 0.4.
    probs = np.tile([0.9, 0.1], (1000, 1))
    labels = np.array([0, 1] * 500)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)
    assert expected_calibration_error(np.zeros((0, 2)), []) == 0.0


def test_coverage_at_precision() -> None:
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4])
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    assert coverage_at_precision(conf, correct, 1.0) == pytest.approx(0.4)
    assert coverage_at_precision(conf, correct, 0.8) == pytest.approx(0.6)
    assert coverage_at_precision(conf, correct, 0.5) == pytest.approx(1.0)
    assert coverage_at_precision(conf[4:], correct[4:], 0.9) == 0.0
