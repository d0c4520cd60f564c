"""The label model on synthetic sources of known accuracy: it recovers each accuracy from human
labels, a bad source loses weight by itself, a rule that votes for one label is informative
through its abstentions, items no source votes on keep the model's probabilities, and the
state does not depend on the order labels arrive in (replayable)."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.core.label_model import MODEL_SOURCE, LabelModel, votes_of

LABELS = ["a", "b", "c", "d"]
K = len(LABELS)


def noisy_vote(rng: np.random.Generator, truth: int, accuracy: float) -> int:
    if rng.random() < accuracy:
        return truth
    return int(rng.choice([y for y in range(K) if y != truth]))


def synthetic(n: int, seed: int = 7) -> list[tuple[dict[str, str], int, list[str]]]:
    """(votes, true label index, abstained sources) per item: 'good' right 90% of the time on
    the 60% of items it votes on, 'bad' right 30% of the time on half of them, 'llm' right 85%
    of the time on every item, and 'sports', which votes 'a' on 70% of the a-items and 5% of
    the others."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        truth = int(rng.integers(K))
        votes: dict[str, str] = {}
        abstained: list[str] = []
        for source, accuracy, coverage in [("good", 0.9, 0.6), ("bad", 0.3, 0.5), ("llm", 0.85, 1.0)]:
            if rng.random() < coverage:
                votes[source] = LABELS[noisy_vote(rng, truth, accuracy)]
            else:
                abstained.append(source)
        if rng.random() < (0.7 if truth == 0 else 0.05):
            votes["sports"] = "a"
        else:
            abstained.append("sports")
        out.append((votes, truth, abstained))
    return out


def trained(items) -> LabelModel:
    model = LabelModel(LABELS)
    for votes, truth, abstained in items:
        model.observe(votes, LABELS[truth], abstained)
    return model


def test_it_recovers_each_sources_accuracy_and_coverage() -> None:
    model = trained(synthetic(4000))
    assert model.accuracy("good") == pytest.approx(0.9, abs=0.03)
    assert model.accuracy("bad") == pytest.approx(0.3, abs=0.03)
    assert model.accuracy("llm") == pytest.approx(0.85, abs=0.03)
    assert model.coverage("good") == pytest.approx(0.6, abs=0.03)
    assert model.coverage("llm") == 1.0
    # the single-label rule: precision P(a | it votes a) = 0.7 / (0.7 + 3 * 0.05) = 0.82
    assert model.accuracy("sports") == pytest.approx(0.82, abs=0.04)
    assert model.judged("good") == pytest.approx(0.6 * 4000, rel=0.05)
    assert model.accuracy("never-seen") == model.prior_accuracy
    assert model.sources() == ["bad", "good", "llm", "sports"]


def test_a_bad_source_loses_weight_and_the_combination_beats_each_source() -> None:
    model = trained(synthetic(3000, seed=1))
    flat = np.full(K, 1 / K)
    good = model.posterior({"good": "b"}, flat)
    bad = model.posterior({"bad": "b"}, flat)
    assert good[1] > 0.85
    assert bad[1] < 0.35, "a source right 30% of the time barely moves the posterior"
    # out of sample: the combined posterior's top label is right more often than any one source
    held_out = synthetic(3000, seed=2)
    right = {"combined": 0, "without bad": 0, "majority": 0, "llm": 0}
    for votes, truth, _ in held_out:
        right["combined"] += int(np.argmax(model.posterior(votes, flat))) == truth
        others = {s: v for s, v in votes.items() if s != "bad"}
        right["without bad"] += int(np.argmax(model.posterior(others, flat))) == truth
        tally = np.bincount([LABELS.index(v) for v in votes.values()], minlength=K)
        right["majority"] += int(np.argmax(tally)) == truth
        right["llm"] += votes["llm"] == LABELS[truth]
    share = {name: count / len(held_out) for name, count in right.items()}
    assert share["combined"] > share["llm"] + 0.03
    assert share["combined"] > share["majority"] + 0.03, "weights beat counting votes"
    assert share["combined"] >= share["without bad"] - 0.01, "the bad source does no harm"


def test_a_single_label_rule_is_informative_through_its_abstentions() -> None:
    model = trained(synthetic(3000, seed=3))
    flat = np.full(K, 1 / K)
    assert model.posterior({"sports": "a"}, flat)[0] > 0.75


def test_no_votes_leave_the_models_probabilities_and_the_models_own_vote_is_not_counted_twice() -> None:
    model = trained(synthetic(500))
    probabilities = [0.5, 0.3, 0.15, 0.05]
    assert model.posterior({}, probabilities) == pytest.approx(probabilities)
    votes = votes_of([], probabilities, LABELS)
    assert votes == {MODEL_SOURCE: "a"}
    assert model.posterior(votes, probabilities) == pytest.approx(probabilities)
    assert model.posterior({}) == pytest.approx(model.class_prior()), "no model: the class prior"
    with pytest.raises(ValueError, match="3 probabilities for 4 labels"):
        model.posterior({}, [0.5, 0.3, 0.2])


def test_the_state_does_not_depend_on_the_order_of_the_labels() -> None:
    items = synthetic(800)
    forward, backward = trained(items), trained(list(reversed(items)))
    for source in forward.sources():
        assert np.array_equal(forward.counts[source], backward.counts[source])
    unknown = LabelModel(LABELS)
    unknown.observe({"good": "zzz"}, "a")
    unknown.observe({"good": "a"}, "not-a-label")
    assert unknown.judged("good") == 0


def test_rebuild_replays_the_latest_prediction_of_each_human_labeled_item() -> None:
    from labelloop.core.label_model import rebuild

    predictions = [
        ("1", [("rule:x", "a")], [0.1, 0.7, 0.1, 0.1]),
        ("1", [("rule:x", "a")], [0.7, 0.1, 0.1, 0.1]),  # a rescore: the latest counts
        ("2", [], [0.1, 0.1, 0.7, 0.1]),
        ("3", [("rule:x", "b")], None),  # no model yet
        ("4", [("rule:x", "a")], None),  # never labeled by people
    ]
    model = rebuild(LABELS, predictions, {"1": "a", "2": "c", "3": "a", "9": "d"}, ["rule:y"])
    assert model.judged(MODEL_SOURCE) == 2 and model.judged("rule:x") == 2
    assert model.counts[MODEL_SOURCE][0, 0] == 1 and model.counts[MODEL_SOURCE][2, 2] == 1
    assert model.counts["rule:x"][0, 0] == 1 and model.counts["rule:x"][0, 1] == 1
    assert model.counts["rule:x"][2, K] == 1, "item 2: rule x abstained"
    assert model.coverage("rule:y") == 0.0 and model.counts["rule:y"].sum() == 3
