"""Unit tests of threshold calibration (labelloop.retraining.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.retraining.calibration import (
    ADMIT_NOTHING,
    calibrate_threshold,
    coverage_at_precision,
    expected_calibration_error,
    exploration_rate,
    move_threshold,
    precision_lower_bound,
    precision_upper_bound,
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


def test_the_global_threshold_is_set_on_the_classes_without_their_own() -> None:
    # People labeled mostly a hard class (it has its own threshold); three easy classes have
    # 30 labels each, all right from 0.6 up. The global threshold serves the easy
    # ones, so it is set on their 90 items, not on a sample the hard class dominates.
    rng = np.random.default_rng(12)
    conf_hard = rng.uniform(0.5, 1.0, 600)
    ok_hard = rng.random(600) < conf_hard - 0.15
    conf_easy = rng.uniform(0.6, 1.0, 90)
    ok_easy = np.ones(90, dtype=bool)
    conf = np.concatenate([conf_hard, conf_easy])
    ok = np.concatenate([ok_hard, ok_easy])
    predicted = ["hard"] * 600 + ["a", "b", "c"] * 30
    cal = calibrate_threshold(conf, ok, 0.95, predicted_labels=predicted, min_class_samples=100)
    assert set(cal.class_thresholds) == {"hard"}
    on_all = calibrate_threshold(conf, ok, 0.95)
    assert cal.threshold < on_all.threshold
    assert cal.threshold <= 0.7
    assert ok_easy[conf_easy >= cal.threshold].mean() >= 0.95
    # Too few items of the other classes (fewer than min_samples): the global one is set on all.
    few = calibrate_threshold(
        conf[:630], ok[:630], 0.95, predicted_labels=predicted[:630], min_class_samples=100
    )
    assert few.threshold == on_all_of(conf[:630], ok[:630])


def test_one_precision_level_for_every_class_when_the_union_meets_the_bound() -> None:
    # An easy class of 600 items, all right, and a class of 100 items 96% right at every
    # confidence: alone, 100 items cannot prove 0.95 at level 0.8 (the bound is about 0.94), so
    # on its own bound it admits nothing. The promise is the precision of all auto-labels: the
    # union (4 wrong in 700) meets the bound, and the class's own point precision meets the
    # target, so one common level admits it.
    rng = np.random.default_rng(3)
    conf = np.concatenate([rng.uniform(0.7, 1.0, 600), rng.uniform(0.6, 1.0, 100)])
    ok = np.concatenate([np.ones(600, dtype=bool), np.arange(100) % 25 != 0])
    predicted = ["easy"] * 600 + ["small"] * 100
    small = np.arange(700) >= 600
    alone = calibrate_threshold(conf[small], ok[small], 0.95, confidence_level=0.8)
    assert alone.admits_nothing
    cal = calibrate_threshold(conf, ok, 0.95, confidence_level=0.8, predicted_labels=predicted)
    assert set(cal.class_thresholds) == {"easy", "small"}
    assert cal.class_thresholds["small"] <= 1.0
    admitted_small = small & (conf >= cal.class_thresholds["small"])
    assert admitted_small.sum() >= 90
    assert ok[admitted_small].mean() >= 0.95  # the class still meets the target as a point estimate
    assert cal.precision_lower_bound is not None and cal.precision_lower_bound >= 0.95  # the union's
    assert cal.expected_coverage > 600 / 700


def test_a_class_below_the_target_is_not_admitted_on_the_union_of_the_others() -> None:
    # The same, but the small class is 90% right and wrong on its most confident items: the
    # union would still meet the bound (about 15 wrong in 700), yet no threshold gives the class
    # itself the target's precision, so it admits nothing.
    rng = np.random.default_rng(4)
    conf = np.concatenate([rng.uniform(0.7, 1.0, 600), rng.uniform(0.6, 1.0, 100)])
    ok = np.concatenate([np.ones(600, dtype=bool), np.arange(100) % 10 != 0])
    order = np.argsort(-conf[600:])
    ok[600:][order[:5]] = False  # and its most confident items are among the wrong ones
    predicted = ["easy"] * 600 + ["small"] * 100
    cal = calibrate_threshold(conf, ok, 0.95, confidence_level=0.8, predicted_labels=predicted)
    assert cal.class_thresholds["small"] > 1.0
    assert cal.class_thresholds["easy"] <= 0.71


def on_all_of(conf: np.ndarray, ok: np.ndarray) -> float:
    return calibrate_threshold(conf, ok, 0.95).threshold


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        calibrate_threshold([0.5, 0.6], [True], 0.95)
    with pytest.raises(ValueError, match="probabilities"):
        calibrate_threshold([1.5], [True], 0.95, min_samples=1)
    with pytest.raises(ValueError, match="target_precision"):
        calibrate_threshold([0.5], [True], 1.5)


def biased_human_sample(
    rng: np.random.Generator, n: int, threshold: float, rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stream of calibrated confidences, routed as Labelloop routes: every item below
    `threshold` goes to people (pi = 1), an item above it with probability `rate`. Returns the
    stream (conf, correct) and the human sample (conf, correct, weights = 1 / pi)."""
    conf, correct = calibrated_scores(rng, n, a=3.0)
    above = conf >= threshold
    sent = ~above | (rng.random(n) < rate)
    pi = np.where(above, rate, 1.0)
    return conf, correct, conf[sent], correct[sent], 1.0 / pi[sent]


def test_weights_undo_the_selection_bias_of_human_labels() -> None:
    # People label everything below 0.8 and 5% above: unweighted, the sample is dominated by the
    # hard items and its precision above any t < 0.8 is far below the stream's; weighted by
    # 1 / pi it estimates the stream's precision (the quantity the threshold is applied to).
    rng = np.random.default_rng(2)
    conf, correct, s_conf, s_ok, s_w = biased_human_sample(rng, 200_000, 0.8, 0.05)
    t = 0.7
    stream = correct[conf >= t].mean()
    admitted = s_conf >= t
    unweighted = s_ok[admitted].mean()
    weighted = (s_w[admitted] * s_ok[admitted]).sum() / s_w[admitted].sum()
    assert abs(weighted - stream) < 0.005
    assert stream - unweighted > 0.05
    # So the weighted calibration admits (nearly) what a calibration on the stream itself does.
    on_stream = calibrate_threshold(conf, correct, 0.9, confidence_level=0.5)
    weighted_cal = calibrate_threshold(s_conf, s_ok, 0.9, confidence_level=0.5, weights=s_w)
    unweighted_cal = calibrate_threshold(s_conf, s_ok, 0.9, confidence_level=0.5)
    assert abs(weighted_cal.threshold - on_stream.threshold) < 0.01
    assert unweighted_cal.threshold > on_stream.threshold + 0.01
    assert weighted_cal.expected_coverage == pytest.approx((conf >= weighted_cal.threshold).mean(), abs=0.01)


def test_weighted_bound_uses_the_effective_sample_size() -> None:
    # 100 correct items with unit weights certify 0.95 at level 0.95 (0.05**(1/100) = 0.970);
    # the same items where 95 have weight 1 and 5 weight 20 are worth far fewer independent ones
    # (Kish: (95 + 100)^2 / (95 + 2000) = 18), and no longer do.
    conf = np.linspace(0.6, 1.0, 100)
    ok = np.ones(100, dtype=bool)
    assert calibrate_threshold(conf, ok, 0.95, min_samples=1).threshold == pytest.approx(0.6)
    w = np.ones(100)
    w[-5:] = 20.0
    cal = calibrate_threshold(conf, ok, 0.95, min_samples=1, weights=w)
    assert cal.threshold > 1.0
    with pytest.raises(ValueError, match="weights"):
        calibrate_threshold(conf, ok, 0.95, weights=np.zeros(100))


@pytest.mark.parametrize("seed", range(20))
def test_weighted_calibration_meets_the_target_on_the_stream(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    _, _, s_conf, s_ok, s_w = biased_human_sample(rng, 6_000, 0.85, 0.05)
    cal = calibrate_threshold(s_conf, s_ok, 0.9, confidence_level=0.9, weights=s_w)
    fresh_conf, fresh_ok = calibrated_scores(rng, 50_000, a=3.0)
    admitted = fresh_conf >= cal.threshold
    assert admitted.mean() > 0.2
    assert fresh_ok[admitted].mean() >= 0.9 - 0.01


def test_move_tightens_when_answers_show_precision_below_target() -> None:
    # A model whose threshold 0.7 admits items that are right 85% of the time; target 0.95.
    rng = np.random.default_rng(4)
    conf = rng.uniform(0.5, 1.0, 2_000)
    ok = rng.random(2_000) < np.where(conf >= 0.9, 0.98, 0.85)
    move = move_threshold(0.7, conf, ok, 0.95)
    assert move.direction == 1 and move.threshold > 0.7
    assert "below the target" in move.reason
    # It moves to where the sample says precision is safe: at or above 0.9, where it is 0.98.
    assert 0.88 <= move.threshold <= 0.95
    admitted = conf >= move.threshold
    assert ok[admitted].mean() >= 0.95


def test_move_loosens_when_answers_show_precision_confidently_above_target() -> None:
    # The threshold 0.95 is far too strict: items from 0.75 up are right 99% of the time.
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.5, 1.0, 2_000)
    ok = rng.random(2_000) < np.where(conf >= 0.75, 0.99, 0.7)
    move = move_threshold(0.95, conf, ok, 0.95)
    assert move.direction == -1
    assert 0.7 <= move.threshold < 0.85
    assert "meets the target" in move.reason
    assert ok[conf >= move.threshold].mean() >= 0.95


def test_move_keeps_the_threshold_on_noise_or_too_few_answers() -> None:
    rng = np.random.default_rng(6)
    # 10 bad answers: too few to act on.
    assert not move_threshold(0.8, np.full(10, 0.9), np.zeros(10, dtype=bool), 0.95).moved
    assert not move_threshold(0.8, [], [], 0.95).moved
    # Precision 0.95 exactly where the threshold is: neither bound excludes the target.
    conf = rng.uniform(0.8, 1.0, 60)
    ok = np.arange(60) % 20 != 0  # 57/60
    kept = move_threshold(0.8, conf, ok, 0.95)
    assert not kept.moved and kept.threshold == 0.8


def test_move_weights_audits_by_their_rate() -> None:
    # Below the threshold every item is answered (weight 1); above it, 2% are (weight 50). The
    # above-threshold answers are few but stand for many items: 30 audits with 5 errors (0.83)
    # tighten, because their weight dominates the admitted precision.
    conf = np.concatenate([np.linspace(0.5, 0.79, 200), np.linspace(0.8, 1.0, 30)])
    ok = np.concatenate([np.ones(200, dtype=bool), np.arange(30) % 6 != 0])
    w = np.concatenate([np.ones(200), np.full(30, 50.0)])
    move = move_threshold(0.8, conf, ok, 0.95, weights=w, min_effective=20)
    assert move.direction == 1


def test_move_to_nothing_when_answers_are_terrible_and_back_when_they_are_good() -> None:
    conf = np.linspace(0.7, 1.0, 40)
    bad = np.arange(40) % 4 == 0  # 25% right
    assert move_threshold(0.7, conf, bad, 0.95).threshold == ADMIT_NOTHING
    # Admitting nothing never tightens further; good answers loosen it again.
    assert not move_threshold(ADMIT_NOTHING, conf, bad, 0.95).moved
    good_conf = np.linspace(0.6, 1.0, 200)
    loosened = move_threshold(ADMIT_NOTHING, good_conf, np.ones(200, dtype=bool), 0.95)
    assert loosened.direction == -1 and loosened.threshold == pytest.approx(0.6)


def test_move_shifts_class_thresholds_by_the_same_step() -> None:
    move = move_threshold(0.8, np.linspace(0.6, 1.0, 200), np.ones(200, dtype=bool), 0.95)
    assert move.direction == -1
    step = move.threshold - 0.8
    assert move.step == pytest.approx(step)
    assert move.shift(0.9) == pytest.approx(0.9 + step)
    assert move.shift(0.6) == pytest.approx(0.6 + step)
    assert move.shift(0.1) == 0.0  # never below 0
    assert move.shift(ADMIT_NOTHING) == ADMIT_NOTHING
    # Leaving admit-nothing sets the global threshold only: class thresholds had no step to take.
    from_nothing = move_threshold(ADMIT_NOTHING, np.linspace(0.6, 1.0, 200), np.ones(200, dtype=bool), 0.95)
    assert from_nothing.direction == -1
    assert from_nothing.shift(0.1) == 0.1
    tighter = move_threshold(0.7, np.linspace(0.7, 1.0, 40), np.arange(40) % 4 == 0, 0.95)
    assert tighter.threshold == ADMIT_NOTHING and tighter.shift(0.2) == ADMIT_NOTHING


def test_move_judges_each_answer_against_its_own_class_threshold() -> None:
    # Global threshold 0.6; both classes have their own, 0.75 ("a") and 0.65 ("b"), as routing
    # applies them. Answers of "a" between 0.6 and 0.75 went to people as uncertain (weight 1)
    # and are right only 70% of the time; at or above their class threshold 60 were audited
    # (weight 5), all right.
    rng = np.random.default_rng(11)
    unsure = rng.uniform(0.6, 0.75, 150)
    sure_a = rng.uniform(0.75, 1.0, 30)
    sure_b = rng.uniform(0.65, 1.0, 30)
    conf = np.concatenate([unsure, sure_a, sure_b])
    ok = np.concatenate([np.arange(150) % 10 < 7, np.ones(60, dtype=bool)])
    w = np.concatenate([np.ones(150), np.full(60, 5.0)])
    own = np.concatenate([np.full(180, 0.75), np.full(30, 0.65)])
    # Against the global threshold alone the uncertain answers look admitted: a spurious tightening.
    assert move_threshold(0.6, conf, ok, 0.95, weights=w).direction == 1
    # Against their own thresholds, what is admitted is 99% right: no tightening.
    move = move_threshold(0.6, conf, ok, 0.95, weights=w, item_thresholds=own)
    assert move.direction != 1
    # A tightening on the margins moves every class threshold by the same step.
    bad = ok.copy()
    bad[150:] = np.arange(60) % 5 != 0  # 80% right above the class thresholds
    tight = move_threshold(0.6, conf, bad, 0.95, weights=w, item_thresholds=own)
    assert tight.direction == 1 and tight.step is not None and tight.step > 0
    assert tight.threshold == pytest.approx(0.6 + tight.step)
    assert tight.shift(0.75) == pytest.approx(min(1.0, 0.75 + tight.step))
    # A class that admits nothing is left out of the sample.
    nothing = np.concatenate([np.full(180, ADMIT_NOTHING), np.full(30, 0.65)])
    only_b = move_threshold(0.6, conf, bad, 0.95, weights=w, item_thresholds=nothing)
    assert only_b.precision == pytest.approx(bad[180:].mean())
    # A global threshold that admits nothing loosens on the answers it governs only: the good
    # answers of a class whose own threshold admits do not loosen it.
    governed = np.concatenate([np.full(150, ADMIT_NOTHING), np.full(60, 0.7)])
    unsure_only = move_threshold(ADMIT_NOTHING, conf, ok, 0.95, weights=w, item_thresholds=governed)
    assert not unsure_only.moved  # 150 answers right 70% of the time
    assert move_threshold(ADMIT_NOTHING, conf[150:], ok[150:], 0.95, weights=w[150:]).moved


def test_exploration_rate_falls_as_the_sample_grows() -> None:
    assert exploration_rate(0, 0.05, 0.01, 50) == 0.05
    assert exploration_rate(50, 0.05, 0.01, 50) == 0.05
    assert exploration_rate(100, 0.05, 0.01, 50) == pytest.approx(0.025)
    assert exploration_rate(10_000, 0.05, 0.01, 50) == 0.01


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
