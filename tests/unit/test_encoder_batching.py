"""Length-sorted batching of the sentence encoder (`encoder_runtime.plan_batches`): pure logic."""

from __future__ import annotations

import pytest

from labelloop.core.encoder_runtime import plan_batches


def _padded(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_every_text_once_sorted_by_length_with_ties_in_input_order() -> None:
    lengths = [50, 3, 7, 3, 120, 7, 9]
    batches = plan_batches(lengths, max_texts=3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert flat == [1, 3, 2, 5, 6, 0, 4]
    assert batches == [[1, 3, 2], [5, 6, 0], [4]]


def test_sorting_pads_far_less_than_input_order() -> None:
    lengths = [256, 12, 240, 10, 250, 14, 230, 9]  # long posts and tweets, interleaved
    in_order = [list(range(i, i + 2)) for i in range(0, 8, 2)]
    planned = plan_batches(lengths, max_texts=2)
    assert _padded(lengths, planned) == 2 * (10 + 14 + 240 + 256)
    assert _padded(lengths, planned) < 0.6 * _padded(lengths, in_order)


def test_token_budget_bounds_each_batch_but_a_long_text_still_runs() -> None:
    lengths = [10] * 8 + [100, 100, 300]
    batches = plan_batches(lengths, max_texts=16, max_tokens=200)
    assert batches == [list(range(8)), [8, 9], [10]]
    for b in batches[:-1]:
        assert len(b) * max(lengths[i] for i in b) <= 200


def test_max_texts_bounds_each_batch() -> None:
    assert [len(b) for b in plan_batches([5] * 10, max_texts=4)] == [4, 4, 2]
    assert plan_batches([], max_texts=4) == []


def test_rejects_an_empty_batch_size() -> None:
    with pytest.raises(ValueError, match="max_texts"):
        plan_batches([1, 2], max_texts=0)
