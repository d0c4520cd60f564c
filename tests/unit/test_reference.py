"""Unit tests of the bench's fixed reference policy (labelloop.bench.reference)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from labelloop.bench.reference import (
    CHUNK_SIZE,
    REFERENCE_SEEDS,
    ReferenceResult,
    cache_key,
    retrain_interval,
    run_reference,
    run_reference_seeds,
)
from labelloop.datasets import datasets_dir, load_builtin


def synthetic_stream(
    n: int, classes: int = 3, noise: float = 0.3, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Documents of 20 words: each word from the class's own vocabulary, or shared noise words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(classes)
        words = [
            f"noise{rng.randrange(50)}" if rng.random() < noise else f"c{label}w{rng.randrange(30)}"
            for _ in range(20)
        ]
        texts.append(" ".join(words))
        labels.append(f"class{label}")
    return texts, labels


def check_invariants(result: ReferenceResult, labels: list[str]) -> None:
    assert result.items == len(labels)
    assert result.human_labeled + result.auto_labeled == result.items
    assert result.human_fraction == pytest.approx(result.human_labeled / result.items)
    assert sum(c.human for c in result.history) == result.human_labeled
    assert sum(c.auto for c in result.history) == result.auto_labeled
    assert [c.start for c in result.history] == list(range(0, len(labels), CHUNK_SIZE))
    assert all(c.human + c.auto == c.size for c in result.history)
    auto_correct = sum(c.auto_correct for c in result.history)
    assert result.accuracy == pytest.approx((result.human_labeled + auto_correct) / result.items)
    # Until a model exists, everything goes to people; the first 100 items always do.
    assert result.history[0].human == min(CHUNK_SIZE, len(labels))
    for chunk in result.history:
        if chunk.models_trained == 0 or chunk.threshold > 1.0:
            assert chunk.auto == 0
    # Models are counted monotonically and the total matches.
    trained = [c.models_trained for c in result.history]
    assert trained == sorted(trained)
    assert result.retrains >= trained[-1]


def test_invariants_and_learning_on_an_easy_synthetic_stream() -> None:
    texts, labels = synthetic_stream(800)
    result = run_reference(texts, labels)
    check_invariants(result, labels)
    assert result.history[1].models_trained == 1, "the first model comes after the first 100 human labels"
    assert result.retrains == 1, "so few new human labels never reach the retraining interval"
    assert result.auto_labeled > 300, "an easy stream is mostly auto-labeled once a model exists"
    assert result.auto_accuracy is not None and result.auto_accuracy >= 0.9
    assert result.accuracy >= 0.95


def test_retrains_follow_the_interval() -> None:
    texts, labels = synthetic_stream(700, noise=0.97)  # nearly pure noise: little gets auto-labeled
    result = run_reference(texts, labels)
    check_invariants(result, labels)
    # Trainings: after 100 human labels, then after every 100 new ones (2% of 700 < 100).
    humans_before = 0
    expected_models = 0
    last = None
    for chunk in result.history:
        assert chunk.models_trained == expected_models
        humans_before += chunk.human
        if (last is None and humans_before >= 100) or (last is not None and humans_before - last >= 100):
            expected_models += 1
            last = humans_before
    assert result.retrains == expected_models


def test_deterministic_for_a_seed() -> None:
    texts, labels = synthetic_stream(500, noise=0.6)
    a = run_reference(texts, labels, seed=3)
    b = run_reference(texts, labels, seed=3)
    assert a.history == b.history and a.accuracy == b.accuracy


def test_five_seeds_give_the_mean_and_the_range() -> None:
    texts, labels = synthetic_stream(600, noise=0.75)
    spread = run_reference_seeds(texts, labels, seeds=REFERENCE_SEEDS)
    assert spread.seeds == (0, 1, 2, 3, 4) and len(spread.runs) == 5
    singles = [run_reference(texts, labels, seed=seed) for seed in REFERENCE_SEEDS]
    for run, single in zip(spread.runs, singles, strict=True):
        assert run["human_fraction"] == single.human_fraction and run["accuracy"] == single.accuracy
    report = spread.as_report()
    for key in ("human_fraction", "accuracy"):
        values = [getattr(r, key) for r in singles]
        assert report[key] == pytest.approx(sum(values) / 5)
        assert report["range"][key] == [min(values), max(values)]
    autos = [r.auto_accuracy for r in singles if r.auto_accuracy is not None]
    assert report["auto_accuracy"] == pytest.approx(sum(autos) / len(autos))
    assert report["range"]["auto_accuracy"] == [min(autos), max(autos)]
    assert report["human_labeled"] + report["auto_labeled"] == pytest.approx(600)
    assert report["items"] == 600 and report["seeds"] == [0, 1, 2, 3, 4]
    assert [r["seed"] for r in report["runs"]] == [0, 1, 2, 3, 4]
    assert len({r.human_fraction for r in singles}) > 1, "the split matters on a noisy stream"


def without_wall(runs: tuple[dict[str, object], ...]) -> list[dict[str, object]]:
    return [{k: v for k, v in run.items() if k not in ("wall_s", "cached")} for run in runs]


def test_seeds_in_a_process_pool_give_the_same_runs() -> None:
    texts, labels = synthetic_stream(300, noise=0.75)
    sequential = run_reference_seeds(texts, labels, seeds=(0, 1))
    pooled = run_reference_seeds(texts, labels, seeds=(0, 1), workers=2)
    assert without_wall(pooled.runs) == without_wall(sequential.runs)
    with pytest.raises(ValueError, match="seed"):
        run_reference_seeds(texts, labels, seeds=())


def test_cached_runs_are_reused_only_for_the_same_stream_target_and_seed(tmp_path: Path) -> None:
    texts, labels = synthetic_stream(300, noise=0.75)
    first = run_reference_seeds(texts, labels, seeds=(0, 1), cache_dir=tmp_path)
    assert not any(run.get("cached") for run in first.runs) and len(list(tmp_path.glob("*.json"))) == 2
    again = run_reference_seeds(texts, labels, seeds=(1, 2), cache_dir=tmp_path)
    assert [run.get("cached", False) for run in again.runs] == [True, False]
    assert without_wall(again.runs[:1]) == without_wall(first.runs[1:])
    other_target = run_reference_seeds(texts, labels, 0.9, seeds=(0,), cache_dir=tmp_path)
    other_stream = run_reference_seeds(texts[:-1], labels[:-1], seeds=(0,), cache_dir=tmp_path)
    assert not other_target.runs[0].get("cached") and not other_stream.runs[0].get("cached")
    assert cache_key(texts, labels, 0.95, 0) != cache_key(texts, labels, 0.95, 1)
    (tmp_path / f"{cache_key(texts, labels, 0.95, 0)}.json").write_text("{broken")
    assert not run_reference_seeds(texts, labels, seeds=(0,), cache_dir=tmp_path).runs[0].get("cached")


def test_one_class_never_trains() -> None:
    result = run_reference(["same words"] * 250, ["only"] * 250)
    assert result.retrains == 0 and result.human_fraction == 1.0 and result.accuracy == 1.0


def test_short_stream_goes_to_people() -> None:
    texts, labels = synthetic_stream(60)
    result = run_reference(texts, labels)
    check_invariants(result, labels)
    assert result.human_labeled == 60


def test_retrain_interval() -> None:
    assert retrain_interval(3_000) == 100
    assert retrain_interval(10_000) == 200
    assert retrain_interval(18_821) == 377


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        run_reference(["a"], [])
    with pytest.raises(ValueError, match="empty"):
        run_reference([], [])


@pytest.mark.skipif(not (datasets_dir() / "bbcnews" / ".complete").is_file(), reason="run `make setup`")
def test_invariants_on_a_real_slice() -> None:
    records = load_builtin("bbcnews", limit=300)
    labels = [r["label"] for r in records]
    result = run_reference([r["text"] for r in records], labels)
    check_invariants(result, labels)
    assert result.history[1].models_trained == 1
    assert result.auto_accuracy is None or result.auto_accuracy >= 0.9
    assert result.as_report()["human_fraction"] == result.human_fraction
