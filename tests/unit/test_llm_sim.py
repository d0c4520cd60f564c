"""The bench's simulated LLM endpoint (bench/llm_sim.py): right with the given probability, a
uniform wrong label otherwise, the same answer for the same item and seed; and the bench's LLM
options are checked before anything starts."""

from __future__ import annotations

from collections import Counter

import pytest

from labelloop.bench.llm import LlmOptions
from labelloop.bench.llm_sim import SimulatedLlm

LABELS = ["a", "b", "c", "d"]


def test_it_is_right_about_as_often_as_asked_and_wrong_uniformly() -> None:
    truth = {f"post number {i}": LABELS[i % 4] for i in range(4000)}
    llm = SimulatedLlm(truth, 0.85, seed=7)
    answers = {text: llm.answer(LABELS, text) for text in truth}
    right = sum(answers[t] == y for t, y in truth.items())
    assert right / len(truth) == pytest.approx(0.85, abs=0.02)
    assert llm.asked == 4000 and llm.right == right
    wrong = Counter(answers[t] for t, y in truth.items() if y == "a" and answers[t] != "a")
    assert set(wrong) == {"b", "c", "d"} and min(wrong.values()) > 0.25 * sum(wrong.values())
    again = SimulatedLlm(truth, 0.85, seed=7)
    assert all(again.answer(LABELS, t) == a for t, a in list(answers.items())[:200])
    other_seed = SimulatedLlm(truth, 0.85, seed=8)
    assert any(other_seed.answer(LABELS, t) != a for t, a in list(answers.items())[:200])


def test_an_unknown_text_gets_a_guess_among_the_labels_asked() -> None:
    llm = SimulatedLlm({"known": "a"}, 1.0)
    assert llm.answer(LABELS, "known") == "a"
    assert llm.answer(["x", "y"], "never seen") in {"x", "y"}
    with pytest.raises(ValueError, match="accuracy"):
        SimulatedLlm({}, 1.5)


def test_bench_llm_options_are_checked() -> None:
    assert not LlmOptions().enabled
    assert LlmOptions(sim_accuracy=0.85).check() is None
    assert "needs --llm-model" in (LlmOptions(url="http://x/v1").check() or "")
    assert "exclude" in (LlmOptions(url="http://x/v1", model="m", sim_accuracy=0.8).check() or "")
    assert "[0, 1]" in (LlmOptions(sim_accuracy=2.0).check() or "")
