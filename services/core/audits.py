"""Audit results of auto-labels, counted per project in Redis since the last threshold change.
Retraining records them (and resets them when it publishes a threshold); ingest reports them in
ProjectStatus (audited precision against the project's target).

`<prefix>:audits:<project>:agree` / `:disagree` are sets of item ids, so a redelivered
annotation counts once and the counts survive a restart. `reset` runs whenever a new threshold
is published: audits judge the threshold in force.
"""

from __future__ import annotations

import redis

from labelloop.core.redis_store import Keys, unavailable

__all__ = ["AuditLedger"]


class AuditLedger:
    """Idempotent agree/disagree counts of audited auto-labels."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_prefix)

    def record(self, project_id: str, item_id: str, agree: bool) -> None:
        yes, no = self.keys("audits", project_id, "agree"), self.keys("audits", project_id, "disagree")
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.sadd(yes if agree else no, item_id)
            pipe.srem(no if agree else yes, item_id)
            pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def counts(self, project_id: str) -> tuple[int, int]:
        """(agreeing, total) audits since the last reset."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.scard(self.keys("audits", project_id, "agree"))
            pipe.scard(self.keys("audits", project_id, "disagree"))
            agree, disagree = pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return int(agree), int(agree) + int(disagree)

    def reset(self, project_id: str) -> None:
        try:
            self.client.delete(
                self.keys("audits", project_id, "agree"), self.keys("audits", project_id, "disagree")
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
