"""Key layout of the human-task queues in Redis, shared by the human-tasks service (which owns
every write) and read-only progress views (admin status, CLI).

Per project `p` (all under the key prefix):
- `queue:p`      sorted set task id -> rank (higher first: priority, then arrival; see
                 human_tasks/queue.py): tasks waiting for an annotator;
- `queue_seq:p`  counter: arrival number of the project's last task;
- `queued_at:p`  sorted set task id -> enqueue time (epoch s): age of the oldest waiting task;
- `leases:p`     sorted set lease id -> expiry (epoch s): leases in flight;
- `task:p:<m>`   hash: the task payload and its consensus state;
- `task_who:p:<m>`, `task_answers:p:<m>`: who has leased it, and the answers so far;
- `task_regions:p:<m>` hash annotator -> the spans and boxes of their answer (only answers that
  marked any; human_tasks/regions.py);
- `lease:<id>`   hash: one lease's holder, task and outcome;
- `answers_unproduced:p` sorted set lease id -> answer time: answers recorded whose events are not
  yet produced (the human-tasks upkeep publishes them);
- `tasks_done:p` set of finished tasks (so a redelivered task is not queued again);
- `tasks_withdrawn:p` set of tasks withdrawn for an auto-label of a newer model (a subset of
  `tasks_done:p`).

`<m>` is the task's *member*, the queue's name for it: `l:<item id>` for an item's labeling task,
`a:<item id>` for its audit, `r:<item id>` for the review of its human label (see `member_of`). It is built from the item id and the kind, never
from the free-form task id, and every kind of key has its own namespace, so no valid item id can
make two tasks, or a task and another key, share a key (item ids `x:audit`, `x:who` or
`x:answers` are ordinary ids). Project ids never contain ':' (core/projects.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from labelloop.core.redis_store import Keys, unavailable
from labelloop.v1 import events_pb2


def task_member(item_id: str, audit: bool) -> str:
    """The queue's name of an item's labeling task (`l:<item id>`) or audit task (`a:<item id>`)."""
    return f"{'a' if audit else 'l'}:{item_id}"


def member_of(task: events_pb2.TaskRouted) -> str:
    """The queue's name of `task` (by its item and reason, not its task id)."""
    if task.reason == events_pb2.TASK_REASON_REVIEW:
        return f"r:{task.ingested.item.item_id}"
    return task_member(task.ingested.item.item_id, task.reason == events_pb2.TASK_REASON_AUDIT)


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

    def task(self, project_id: str, member: str) -> str:
        return self.k("task", project_id, member)

    def who(self, project_id: str, member: str) -> str:
        return self.k("task_who", project_id, member)

    def answers(self, project_id: str, member: str) -> str:
        return self.k("task_answers", project_id, member)

    def regions(self, project_id: str, member: str) -> str:
        return self.k("task_regions", project_id, member)

    def lease(self, lease_id: str) -> str:
        return self.k("lease", lease_id)

    def sequence(self, project_id: str) -> str:
        return self.k("queue_seq", project_id)

    def withdrawn(self, project_id: str) -> str:
        return self.k("tasks_withdrawn", project_id)

    def done(self, project_id: str) -> str:
        return self.k("tasks_done", project_id)

    def unproduced(self, project_id: str) -> str:
        return self.k("answers_unproduced", project_id)

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
