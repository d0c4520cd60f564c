"""Which items retraining has sent for review, kept in Redis so that a restart does not send
them again (`<prefix>:reviews-sent:<project>`, a set of item ids; Redis keeps it with its
append-only file). The labeled set also learns reviewed items from the `annotations` replay,
but an item whose review task is still waiting has no answer there yet: without this set a
restarted retraining would flag it and queue a second review of it. Written by retraining's
label checks (the one writer) after the review tasks are flushed; read before each check.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from labelloop.core.redis_store import Keys, unavailable


class ReviewLedger:
    """The set of items sent for review, per project."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_prefix)

    def sent(self, project_id: str) -> set[str]:
        """Every item of `project_id` ever sent for review."""
        try:
            members = self.client.smembers(self.keys("reviews-sent", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}  # type: ignore[union-attr]

    def record(self, project_id: str, item_ids: Iterable[str]) -> None:
        """Remember that review tasks were sent for `item_ids` (idempotent)."""
        ids = list(item_ids)
        if not ids:
            return
        try:
            self.client.sadd(self.keys("reviews-sent", project_id), *ids)
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
