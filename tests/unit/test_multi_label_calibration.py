"""Per-label thresholds of multi-label projects, calibrated on the joint "every label right" event."""

import numpy as np
import pytest

from labelloop.retraining.calibration import ADMIT_NOTHING, NEVER_OFF, calibrate_label_bounds


def sample() -> tuple[np.ndarray, np.ndarray]:
    """Label A: 0.9 when on, 0.1 when off, always right. Label B: 0.8 on 300 items (all truly on),
    0.5 on 100 items (half on, half off)."""
    rows, truth = [], []
    for i in range(400):
        a_on = i % 2 == 0
        if i < 300:
            b_p, b_on = 0.8, True
        else:
            b_p, b_on = 0.5, i % 2 == 0
        rows.append([0.9 if a_on else 0.1, b_p])
        truth.append([a_on, b_on])
    return np.array(rows), np.array(truth)


def test_each_label_gets_its_own_pair_and_the_joint_bound_holds() -> None:
    probs, truth = sample()
    bounds = calibrate_label_bounds(probs, truth, ["a", "b"], 0.95, confidence_level=0.95)
    # A is always right: confident both ways. B's "on" is right from 0.8 up; at 0.5 it is a coin
    # flip, and no probability of B ever means "off" reliably.
    assert bounds.upper == {"a": 0.9, "b": 0.8}
    assert bounds.lower == {"a": 0.1, "b": NEVER_OFF}
    # Auto-labeled: the 300 items with B at 0.8, every one exactly right.
    assert bounds.expected_coverage == pytest.approx(0.75)
    assert bounds.precision == 1.0
    # One-sided Clopper-Pearson with 300 of 300 right: 0.05 ** (1 / 300).
    assert bounds.precision_lower_bound == pytest.approx(0.05 ** (1 / 300))


def test_too_few_items_admit_nothing() -> None:
    probs, truth = sample()
    bounds = calibrate_label_bounds(probs[:40], truth[:40], ["a", "b"], 0.95, min_samples=50)
    assert bounds.admits_nothing
    assert bounds.upper == {"a": ADMIT_NOTHING, "b": ADMIT_NOTHING}
    # 10 perfect items: 0.05 ** (1/10) = 0.74 is below the target, so nothing either
    bounds = calibrate_label_bounds(probs[:10], truth[:10], ["a", "b"], 0.95, min_samples=1)
    assert bounds.admits_nothing


def test_errors_spread_over_labels_are_caught_by_the_joint_bound() -> None:
    """Three labels, each wrong on its own 4% of the confident items (different items): each
    label alone is 96% right there, but only 88% of the items are right on all three. A looser
    rule that trusted per-label precision would admit them; the joint bound must not."""
    n = 3000
    rng = np.random.default_rng(0)
    truth = rng.random((n, 3)) < 0.5
    probs = np.where(truth, 0.95, 0.05)
    wrong_rows = rng.permutation(n)[: int(0.12 * n)]
    for j, rows in enumerate(np.array_split(wrong_rows, 3)):
        probs[rows, j] = np.where(truth[rows, j], 0.05, 0.95)  # confidently wrong
    # a slice that is truly easy: a fourth group of items at 0.99 / 0.01, always right
    easy = rng.random((1000, 3)) < 0.5
    probs = np.vstack([probs, np.where(easy, 0.99, 0.01)])
    truth = np.vstack([truth, easy])
    bounds = calibrate_label_bounds(probs, truth, ["x", "y", "z"], 0.95)
    assert bounds.upper == {"x": 0.99, "y": 0.99, "z": 0.99}
    assert bounds.lower == {k: pytest.approx(0.01) for k in "xyz"}
    assert bounds.precision == 1.0
    assert bounds.expected_coverage == pytest.approx(1000 / 4000)


def test_weights_count_as_the_stream() -> None:
    """The same items, the confident ones weighted 10 (sent to people with probability 0.1): on
    the stream the coin-flip items are 100 of 3,100, so admitting them too keeps exact-match
    precision at 3,050 / 3,100 = 0.984, above the target: the whole stream is auto-labeled."""
    probs, truth = sample()
    weights = np.where(probs[:, 1] == 0.8, 10.0, 1.0)
    bounds = calibrate_label_bounds(probs, truth, ["a", "b"], 0.95, weights=weights)
    assert bounds.upper == {"a": 0.9, "b": 0.5}
    assert bounds.expected_coverage == pytest.approx(1.0)
    assert bounds.precision == pytest.approx(3050 / 3100)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        calibrate_label_bounds(np.zeros((60, 2)), np.zeros((60, 3), dtype=bool), ["a", "b"], 0.95)
