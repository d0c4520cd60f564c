"""Per-project progress counts in Redis, idempotent under redelivery (sets keyed by item id).

- `<prefix>:items:<project>`: hash item id -> "ok" (or "pending:<ts>" while ingest produces it);
  ingest's idempotency record, and the `ingested` count.
- `<prefix>:labeled:<project>:model` / `:human`: sets of item ids whose final label came from
  the model / from people (written by the final-label fence, core/final_labels.py: an item is in
  one of them at most).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from labelloop.core.redis_store import Keys, unavailable


@dataclass(frozen=True)
class Counts:
    """Progress of one project."""

    ingested: int
    auto_labeled: int
    human_labeled: int


class Progress:
    """Records and reads progress counts."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_prefix)

    def items_key(self, project_id: str) -> str:
        """The ingest idempotency hash of a project."""
        return self.keys("items", project_id)

    def labeled_key(self, project_id: str, source: str) -> str:
        """The set of item ids whose final label came from `source` ("model" or "human"); written
        only by the final-label fence (core/final_labels.py), inside its claim."""
        return self.keys("labeled", project_id, source)

    def counts(self, project_id: str) -> Counts:
        """The project's counts."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hlen(self.items_key(project_id))
            pipe.scard(self.labeled_key(project_id, "model"))
            pipe.scard(self.labeled_key(project_id, "human"))
            ingested, auto, human = pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return Counts(int(ingested), int(auto), int(human))


class ServingVersions:
    """`<prefix>:serving_version:<project>`: the Triton version that serves a project. Its one
    writer is retraining's model lifecycle (`retraining/lifecycle.py`: deploys, promotions,
    rollbacks, the start-up reconciliation); the status APIs read it."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_prefix)

    def set(self, project_id: str, version: int) -> None:
        try:
            self.client.set(self.keys("serving_version", project_id), version)
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def get(self, project_id: str) -> int:
        try:
            raw = self.client.get(self.keys("serving_version", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return int(raw) if raw else 0  # type: ignore[arg-type]
