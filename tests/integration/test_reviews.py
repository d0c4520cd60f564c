"""Review tasks end to end against the real Kafka and Redis: people's labels on the `labels`
topic, read into retraining's labeled set, checked (cleanlab) with out-of-sample probabilities;
the flagged one becomes a review task that its first annotator cannot lease, a different one
answers it, a disagreement calls one more, and the verdict corrects the training set while the
raw labels topic keeps exactly one record per item."""

from __future__ import annotations

import numpy as np
from test_final_labels import PROJECT, Loop, key, one_record_each, prediction
from test_final_labels import loop as loop  # the fixture: the fence tests' loop

from labelloop.core.label_log import replay
from labelloop.core.topics import ANNOTATIONS, PREDICTIONS, TASKS
from labelloop.human_tasks.agreement import AgreementStore, replay_agreement
from labelloop.retraining.dataset import LabeledSet
from labelloop.retraining.label_checks import HUMAN, find_issues, review_tasks
from labelloop.v1 import events_pb2

LABELS = ["ham", "spam"]


def test_a_flagged_human_label_is_reviewed_by_someone_else_and_corrects_training_only(loop: Loop) -> None:
    items = {f"i{n}": ("spam" if n % 2 else "ham") for n in range(16)}
    wrong = "i4"  # a ham item that ann-1 labels spam
    for item_id in items:
        loop.send(PREDICTIONS, key(item_id), prediction(item_id, 0.5, text=f"{items[item_id]} {item_id}"))
    loop.settle(lambda: loop.queued() == len(items))
    answered = 0
    while answered < len(items):
        lease = loop.queue.lease(PROJECT, "ann-1")
        assert lease is not None
        item_id = lease.task.ingested.item.item_id
        loop.queue.release(lease.lease_id, "ann-1")
        given = "spam" if item_id == wrong else items[item_id]
        assert loop.answer("ann-1", given)
        answered += 1
    before = one_record_each(loop)
    assert len(before) == len(items) and list(before[wrong].labels) == ["spam"]

    # What retraining does before a training: its labeled set from the topic, the checks with
    # probabilities from a model that did not see the item (here: one that knows the truth).
    labeled = LabeledSet(holdout_fraction=0.0)
    for records in before.values():
        labeled.apply(records)
    entries = labeled.snapshot().train
    probs = np.array([[0.9, 0.1] if items[x.item_id] == "ham" else [0.1, 0.9] for x in entries])
    issues = find_issues(
        [x.label for x in entries],
        probs,
        [True] * len(entries),
        [HUMAN] * len(entries),
        LABELS,
        [x.item_id for x in entries],
        min_per_class=2,  # 16 labels: the service's default (20 per class) would check none
    )
    assert [entries[i].item_id for i in issues.flagged_human] == [wrong]
    tasks = review_tasks(issues, entries)
    assert len(tasks) == 1 and list(tasks[0].review_of.annotators) == ["ann-1"]
    loop.api.agreement = AgreementStore(loop.queue.client, loop.queue.prefix)
    for _ in range(2):  # sent twice (a retried training): queued once
        loop.send(TASKS, key(wrong), tasks[0])
    loop.settle(lambda: loop.human_tasks.processed >= len(items) + 2 and loop.queued() == 1)

    assert loop.queue.lease(PROJECT, "ann-1") is None, "the first annotator never reviews their label"
    lease = loop.queue.lease(PROJECT, "ann-2")
    assert lease is not None and lease.task.reason == events_pb2.TASK_REASON_REVIEW
    assert not lease.task.prediction.scores, "the reviewer sees no model answer"
    loop.queue.release(lease.lease_id, "ann-2")
    assert not loop.answer("ann-2", "ham"), "a review never finalizes a label"
    assert loop.queue.lease(PROJECT, "ann-2") is None
    assert not loop.answer("ann-3", "ham")  # the tie (spam vs ham) called one more annotator
    assert loop.queued() == 0

    reviews = [
        a
        for a in replay(loop.stack.bootstrap_servers, loop.prefix, ANNOTATIONS, project_id=PROJECT)
        if a.reason == events_pb2.TASK_REASON_REVIEW
    ]
    assert [(a.annotator_id, list(a.consensus_labels)) for a in reviews] == [
        ("ann-2", []),
        ("ann-3", ["ham"]),
    ]
    assert all(list(a.reviewed_labels) == ["spam"] for a in reviews)
    after = one_record_each(loop)  # raw records: still one per item, the original label
    assert list(after[wrong].labels) == ["spam"] and len(after) == len(items)

    for annotation in reviews:
        labeled.apply_review(annotation)
    assert {x.item_id: x.label for x in labeled.snapshot().train}[wrong] == "ham"
    assert labeled.reviewed() == {wrong}

    live = {r.annotator: r for r in AgreementStore(loop.queue.client, loop.queue.prefix).read(PROJECT)}
    assert (live["ann-1"].reviewed, live["ann-1"].upheld) == (1, 0)
    assert (live["ann-2"].answered, live["ann-2"].agreed, live["ann-3"].agreed) == (1, 1, 1)
    replayed = {
        r.annotator: r
        for r in replay_agreement(
            replay(loop.stack.bootstrap_servers, loop.prefix, ANNOTATIONS, project_id=PROJECT)
        )
    }
    assert replayed["ann-1"].reviewed == 1 and replayed["ann-1"].upheld == 0
    assert replayed["ann-2"] == live["ann-2"] and replayed["ann-3"] == live["ann-3"]
