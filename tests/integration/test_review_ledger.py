"""Retraining's set of items sent for review survives a restart (retraining/reviews.py, on the
real Redis of the test stack): a label flagged again after a restart, its first review still
unanswered, is not sent for review a second time."""

from __future__ import annotations

import numpy as np
import redis

from labelloop.retraining.label_checks import HUMAN, find_issues
from labelloop.retraining.reviews import ReviewLedger
from labelloop.stack import LocalStack

LABELS = ["ham", "spam"]


def checks(already: set[str]):  # type: ignore[no-untyped-def]
    """The label checks on 40 items whose labels the model agrees with, but i4's."""
    ids = [f"i{n}" for n in range(40)]
    labels = ["spam" if n % 2 else "ham" for n in range(40)]
    labels[4] = "spam"  # people said spam; the out-of-sample model is sure it is ham
    probs = np.asarray([[0.05, 0.95] if n % 2 else [0.95, 0.05] for n in range(40)])
    return find_issues(labels, probs, np.ones(40, dtype=bool), [HUMAN] * 40, LABELS, ids, already, 1)


def test_items_sent_for_review_are_not_sent_again_after_a_restart(
    stack: LocalStack, redis_prefix: str
) -> None:
    def connect() -> redis.Redis:
        return redis.Redis.from_url(stack.redis_url, password=stack.redis_password)

    first = connect()
    try:
        ledger = ReviewLedger(first, redis_prefix)
        issues = checks(ledger.sent("p"))
        sent = [f"i{n}" for n in issues.to_review]
        assert sent == ["i4"]
        ledger.record("p", sent)
        ledger.record("p", sent)  # a retried batch changes nothing
    finally:
        first.close()
    restarted = connect()  # a new process: nothing in memory, the labeled set rebuilt empty of reviews
    try:
        ledger = ReviewLedger(restarted, redis_prefix)
        assert ledger.sent("p") == {"i4"} and ledger.sent("other") == set()
        again = checks(ledger.sent("p"))
        assert [f"i{n}" for n in again.flagged_human] == ["i4"] and again.to_review == ()
    finally:
        restarted.delete(*restarted.scan_iter(match=f"{redis_prefix}:*"))
        restarted.close()
