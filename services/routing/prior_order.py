"""The zero-shot prior's class ranks, for routing's order of people's work before the first
trained model (`decisions.prior_priority`).

`PriorRanks.next` counts, per project and serving version of the prior, how many items the prior
gave each top label so far, in one Redis hash `<prefix>:prior-rank:<project>:<version>` (field:
the label, value: the count; HINCRBY, atomic across routing replicas). A redelivered prediction
counts again: its rank, and so its priority, is a little off, which changes only the order in
which people see waiting items, never a decision. The hash is tiny (one field per label) and
expires a week after its last use.
"""

from __future__ import annotations

import redis

from labelloop.core.redis_store import Keys, unavailable

__all__ = ["PriorRanks"]

TTL_S = 7 * 24 * 3600


class PriorRanks:
    """Per-class counters of the items the prior routed (see module doc)."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_prefix)

    def next(self, project_id: str, version: int, label: str) -> int:
        """How many earlier items of `project_id` the prior's version `version` gave top label
        `label` (0 for the first); counts this one. DependencyUnavailable when Redis is down."""
        key = self.keys("prior-rank", project_id, str(version))
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(key, label, 1)
            pipe.expire(key, TTL_S)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return int(count) - 1
