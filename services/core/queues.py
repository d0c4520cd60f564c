"""Key layout of the human-task queues in Redis, shared by the human-tasks service (which owns
every write) and read-only progress views (admin status, CLI).

Per project `p` (all under the key prefix):
- `queue:p`      sorted set task id -> rank (higher first: priority, then arrival; see
                 human_tasks/queue.py): tasks waiting for an annotator;
- `queue_seq:p`  counter: arrival number of the project's last task;
- `queued_at:p`  sorted set task id -> enqueue time (epoch s): age of the oldest waiting task;
- `leases:p`     sorted set lease id -> expiry (epoch s): leases in flight;
- `task:p:<id>`  hash: the task payload and its consensus state (`:who`, `:answers` beside it);
- `lease:<id>`   hash: one lease's holder, task and outcome;
- `tasks_done:p` set of finished task ids (so a redelivered task is not queued again);
- `tasks_withdrawn:p` set of task ids withdrawn for an auto-label of a newer model (a subset of
  `tasks_done:p`; makes a redelivered withdrawal publish its label again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from labelloop.core.redis_store import Keys, unavailable


class QueueKeys:
    """Key names for one project's human-task queue."""

    def __init__(self, key_prefix: str) -> None:
        self.k = Keys(key_prefix)

    def queue(self, project_id: str) -> str:
        return self.k("queue", project_id)

    def queued_at(self, project_id: str) -> str:
        return self.k("queued_at", project_id)

    def leases(self, project_id: str) -> str:
        return self.k("leases", project_id)

    def task(self, project_id: str, task_id: str) -> str:
        return self.k("task", project_id, task_id)

    def lease(self, lease_id: str) -> str:
        return self.k("lease", lease_id)

    def sequence(self, project_id: str) -> str:
        return self.k("queue_seq", project_id)

    def withdrawn(self, project_id: str) -> str:
        return self.k("tasks_withdrawn", project_id)

    def done(self, project_id: str) -> str:
        return self.k("tasks_done", project_id)

    def annotations(self, project_id: str) -> str:
        return self.k("annotations", project_id)


@dataclass(frozen=True)
class QueueStats:
    """One project's human queue."""

    queued: int
    leased: int
    oldest_age_s: float
    annotations: int


def read_stats(client: redis.Redis, keys: QueueKeys, project_id: str) -> QueueStats:
    """Depth, leases in flight and the oldest waiting task's age."""
    try:
        pipe = client.pipeline(transaction=False)
        pipe.zcard(keys.queue(project_id))
        pipe.zcard(keys.leases(project_id))
        pipe.zrange(keys.queued_at(project_id), 0, 0, withscores=True)
        pipe.get(keys.annotations(project_id))
        queued, leased, oldest, annotations = pipe.execute()
    except redis.RedisError as exc:
        raise unavailable(exc) from exc
    age = max(0.0, time.time() - oldest[0][1]) if oldest else 0.0
    return QueueStats(int(queued), int(leased), age, int(annotations or 0))
