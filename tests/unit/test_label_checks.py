"""The label checks before a training (retraining/label_checks.py), the review verdict in the
labeled set (retraining/dataset.py) and per-annotator agreement (human_tasks/agreement.py)."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.human_tasks.agreement import agreement_updates, replay_agreement
from labelloop.retraining.dataset import LabeledSet
from labelloop.retraining.label_checks import AUTO, HUMAN, find_issues, review_task
from labelloop.v1 import common_pb2, events_pb2

LABELS = ["a", "b", "c"]


def _noisy(n: int, flips: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[int]]:
    """`n` items whose true class the probabilities favour (0.8), with `flips` labels flipped."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), truth] = 0.8
    probs += rng.uniform(0, 0.05, (n, 3))
    probs /= probs.sum(axis=1, keepdims=True)
    flipped = sorted(rng.choice(n, flips, replace=False).tolist())
    labels = [LABELS[t] for t in truth]
    for i in flipped:
        labels[i] = LABELS[(truth[i] + 1) % 3]
    return labels, probs, flipped


def test_flags_the_flipped_labels_and_only_them() -> None:
    labels, probs, flipped = _noisy(300, 15)
    ids = [f"i{i}" for i in range(300)]
    issues = find_issues(labels, probs, [True] * 300, [HUMAN] * 300, LABELS, ids)
    # cleanlab estimates how many labels are wrong and flags that many: here 14 of the 15 flips
    assert set(issues.flagged_human) <= set(flipped)
    assert len(issues.flagged_human) >= 13
    assert issues.to_review == issues.flagged_human
    assert issues.flagged_auto == ()
    assert issues.counts()["label_checks.flagged_human"] == len(issues.flagged_human)
    assert issues.counts()["label_checks.checked"] == 300


def test_auto_labels_are_flagged_apart_and_reviewed_items_are_not_sent_again() -> None:
    labels, probs, flipped = _noisy(300, 10, seed=1)
    ids = [f"i{i}" for i in range(300)]
    sources = [AUTO if i in flipped[:4] else HUMAN for i in range(300)]
    first = find_issues(labels, probs, [True] * 300, sources, LABELS, ids)
    assert first.flagged_auto and set(first.flagged_auto) <= set(flipped[:4])
    assert len(first.flagged_human) >= 4 and set(first.flagged_human) <= set(flipped[4:])
    assert first.to_review == first.flagged_human
    reviewed = first.flagged_human[0]
    again = find_issues(labels, probs, [True] * 300, sources, LABELS, ids, {ids[reviewed]})
    assert again.flagged_human == first.flagged_human
    assert again.to_review == first.flagged_human[1:]
    assert again.counts()["label_checks.reviews_sent"] == len(first.flagged_human) - 1


def test_rows_without_out_of_fold_probabilities_are_not_checked() -> None:
    labels, probs, flipped = _noisy(200, 8, seed=2)
    valid = np.ones(200, dtype=bool)
    valid[flipped[:3]] = False
    probs[flipped[:3]] = 0.0
    issues = find_issues(labels, probs, valid, [HUMAN] * 200, LABELS, [str(i) for i in range(200)])
    assert len(issues.flagged_human) >= 4 and set(issues.flagged_human) <= set(flipped[3:])
    assert issues.checked == 197


def test_nothing_is_checked_below_the_labels_per_class_and_likely_labels_are_never_flagged() -> None:
    labels, probs, flipped = _noisy(300, 15, seed=3)
    ids = [str(i) for i in range(300)]
    few = find_issues(labels[:59], probs[:59], [True] * 59, [HUMAN] * 59, LABELS, ids[:59])
    assert few.checked == 0 and few.flagged_human == ()  # 59 < 20 per class x 3 classes
    off = find_issues(labels, probs, [True] * 300, [HUMAN] * 300, LABELS, ids, min_per_class=0)
    assert off.checked == 0 and off.flagged_human == ()
    # a flipped label the model still gives 0.26, just above 0.75 of a uniform 1/3: cleanlab
    # flags it, the probability condition keeps it
    probs[flipped[0]] = 0.0
    probs[flipped[0], LABELS.index(labels[flipped[0]])] = 0.26
    probs[flipped[0], (LABELS.index(labels[flipped[0]]) + 1) % 3] = 0.74
    loose = find_issues(labels, probs, [True] * 300, [HUMAN] * 300, LABELS, ids, max_given_share=3.0)
    assert flipped[0] in loose.flagged_human
    issues = find_issues(labels, probs, [True] * 300, [HUMAN] * 300, LABELS, ids)
    assert flipped[0] not in issues.flagged_human
    assert len(issues.flagged_human) >= 12 and set(issues.flagged_human) <= set(flipped[1:])


def test_too_few_labels_flag_nothing_and_bad_lengths_are_refused() -> None:
    probs = np.array([[0.9, 0.1, 0.0]])
    assert find_issues(["b"], probs, [True], [HUMAN], LABELS, ["x"]).flagged_human == ()
    with pytest.raises(ValueError, match="same length"):
        find_issues(["a", "b"], probs, [True], [HUMAN], LABELS, ["x"])


def test_a_review_task_excludes_the_first_annotators_and_shows_no_prediction() -> None:
    ingested = events_pb2.ItemIngested()
    ingested.item.project_id, ingested.item.item_id = "p", "x/1"
    task = review_task(ingested, ["a"], ["ann-1"])
    assert task.reason == events_pb2.TASK_REASON_REVIEW
    assert task.task_id == "x/1:review"
    assert list(task.review_of.annotators) == ["ann-1"] and list(task.review_of.labels) == ["a"]
    assert not task.prediction.scores and task.annotators_required == 1
    assert task.WhichOneof("command") == "enqueue"


def _human_label(item_id: str, label: str) -> events_pb2.LabelFinalized:
    out = events_pb2.LabelFinalized(
        labels=[label], source=common_pb2.LABEL_SOURCE_HUMAN, annotators=["ann-1"]
    )
    out.ingested.item.project_id, out.ingested.item.item_id = "p", item_id
    out.ingested.item.content.text = "text"
    return out


def _review(item_id: str, annotator: str, label: str, consensus: str = "") -> events_pb2.AnnotationSubmitted:
    return events_pb2.AnnotationSubmitted(
        task_id=f"{item_id}:review",
        item_id=item_id,
        project_id="p",
        annotator_id=annotator,
        labels=[label],
        lease_id=f"lease-{annotator}-{item_id}",
        reason=events_pb2.TASK_REASON_REVIEW,
        consensus_labels=[consensus] if consensus else [],
        reviewed_labels=["a"],
        reviewed_annotators=["ann-1"],
    )


def test_a_review_verdict_replaces_the_training_label_even_on_redelivery() -> None:
    labeled = LabeledSet(holdout_fraction=0.0)
    labeled.apply(_human_label("x", "a"))
    assert labeled.snapshot().train[0].annotators == ("ann-1",)
    assert not labeled.apply_review(_review("x", "ann-2", "b"))  # a tie: no verdict yet
    assert labeled.reviewed() == {"x"}
    assert labeled.apply_review(_review("x", "ann-3", "b", consensus="b"))
    assert [x.label for x in labeled.snapshot().train] == ["b"]
    labeled.apply(_human_label("x", "a"))  # the final label, delivered again
    assert [x.label for x in labeled.snapshot().train] == ["b"]
    upheld = LabeledSet(holdout_fraction=0.0)
    upheld.apply(_human_label("y", "a"))
    assert not upheld.apply_review(_review("y", "ann-2", "a", consensus="a"))
    assert [x.label for x in upheld.snapshot().train] == ["a"]


def test_agreement_counts_consensus_and_reviews() -> None:
    assert agreement_updates({"u1": "a", "u2": "b", "u3": "a"}, "a") == {
        ("u1", "answered"): 1,
        ("u1", "agreed"): 1,
        ("u2", "answered"): 1,
        ("u2", "agreed"): 0,
        ("u3", "answered"): 1,
        ("u3", "agreed"): 1,
    }
    # a review: the original's pre-filled answer is judged as reviewed, not as an answer
    review = agreement_updates({"u1": "a", "u2": "b", "u3": "b"}, "b", ["a"], ["u1"])
    assert review[("u1", "reviewed")] == 1 and review[("u1", "upheld")] == 0
    assert ("u1", "answered") not in review
    assert review[("u2", "agreed")] == 1


def test_agreement_replays_from_annotations_once_per_lease() -> None:
    first = events_pb2.AnnotationSubmitted(
        task_id="x", item_id="x", annotator_id="u1", labels=["a"], lease_id="l1"
    )
    second = events_pb2.AnnotationSubmitted(
        task_id="x", item_id="x", annotator_id="u2", labels=["b"], lease_id="l2", consensus_labels=["b"]
    )
    rows = replay_agreement(
        [first, first, second, _review("x", "u3", "b"), _review("x", "u4", "a", consensus="a")]
    )
    by = {r.annotator: r for r in rows}
    assert (by["u1"].answered, by["u1"].agreed) == (1, 0)
    assert by["u2"].consensus_agreement == 1.0
    assert (by["u3"].answered, by["u3"].agreed, by["u4"].agreed) == (1, 0, 1)
    assert (by["ann-1"].reviewed, by["ann-1"].upheld) == (1, 1)
    assert by["ann-1"].review_agreement == 1.0 and by["ann-1"].consensus_agreement is None
