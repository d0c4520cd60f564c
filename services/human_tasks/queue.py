"""Per-project priority queues of human tasks in Redis, with leases (key layout:
labelloop.core.queues). Every state change is one Lua script, so concurrent annotators and
service replicas never see half an update.

A task needs `required` distinct annotators. It stays in the queue while
answers + leases in flight < required. An expired or released lease puts it back. When the
last required answer arrives, `submit` returns the complete answers; the caller decides the
consensus (`consensus.majority`) and either finalizes or asks for one more annotator on a tie.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis

from labelloop.core.errors import FailedPrecondition
from labelloop.core.queues import QueueKeys, member_of, task_member
from labelloop.core.redis_store import unavailable
from labelloop.v1 import events_pb2

LEASE_RECORD_TTL_S = 7 * 24 * 3600  # how long an answered lease is remembered for duplicate submits
# How long the call that records an answer holds the production of its events: a repeat submit
# (a page sends a held answer on unload and again on load) or the upkeep takes them over only
# after it, so two calls never publish the same answer at once. Below the upkeep's republish delay.
PRODUCE_HOLD_S = 30.0

# The queue's score ("rank") orders by priority, then by arrival: equal priorities (every task
# before a project's first model has priority 1) are served first come, first served. Without
# the arrival part Redis breaks ties by member, i.e. by item id, and ids such as "<class>/<n>"
# would send people one class at a time, so the first models would know one or two classes.
# rank = floor(priority * 1e5) * 2^32 + (2^32 - arrival number): exact in a double for
# priorities up to 20 and 4 billion tasks per project; written with %.0f, never as 1e+14.
# Tasks queued before ranks existed have none: re-queueing them falls back to their priority.
_ENQUEUE = """
-- KEYS: queue, queued_at, done, task, sequence, who, answers ; ARGV: member, payload, priority,
-- required, now, project, reviewed label ('' unless a review), the reviewed label's annotators...
-- A review starts with the label under review as one answer (under its first annotator's name)
-- and every one of its annotators in the set of who saw it: one more, different, annotator
-- answers; a disagreement is a tie, which calls one more (api.py).
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local p = math.min(math.max(tonumber(ARGV[3]), 0), 20)
local seq = redis.call('INCR', KEYS[5]) % 4294967296
local rank = string.format('%.0f', math.floor(p * 100000) * 4294967296 + (4294967296 - seq))
local required = tonumber(ARGV[4])
if ARGV[7] ~= '' then
  for i = 8, #ARGV do redis.call('SADD', KEYS[6], ARGV[i]) end
  redis.call('HSET', KEYS[7], ARGV[8] or '', ARGV[7])
  required = required + 1
end
redis.call('HSET', KEYS[4], 'payload', ARGV[2], 'priority', ARGV[3], 'rank', rank, 'required', required,
           'active', 0, 'queued_at', ARGV[5], 'project', ARGV[6])
redis.call('ZADD', KEYS[1], rank, ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return 1
"""

_LEASE = """
-- KEYS: queue, queued_at, leases ; ARGV: prefix, annotator, lease_id, now, expires, scan, project
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[6]) - 1)
for _, id in ipairs(ids) do
  local tk = ARGV[1] .. ':task:' .. ARGV[7] .. ':' .. id
  local who = ARGV[1] .. ':task_who:' .. ARGV[7] .. ':' .. id
  if redis.call('SISMEMBER', who, ARGV[2]) == 0 and redis.call('EXISTS', tk) == 1 then
    redis.call('SADD', who, ARGV[2])
    local active = redis.call('HINCRBY', tk, 'active', 1)
    local required = tonumber(redis.call('HGET', tk, 'required'))
    local answers = redis.call('HLEN', ARGV[1] .. ':task_answers:' .. ARGV[7] .. ':' .. id)
    if answers + active >= required then
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
    end
    local lk = ARGV[1] .. ':lease:' .. ARGV[3]
    redis.call('HSET', lk, 'task', id, 'annotator', ARGV[2], 'project', ARGV[7], 'expires', ARGV[5],
               'leased_at', ARGV[4], 'status', 'leased')
    redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
    return {id, redis.call('HGET', tk, 'payload')}
  end
end
return false
"""

_REQUEUE = """
-- puts a lease's task back; KEYS: queue, queued_at, leases ; ARGV: prefix, lease_id, new_status, annotator_or_empty
local lk = ARGV[1] .. ':lease:' .. ARGV[2]
if redis.call('HGET', lk, 'status') ~= 'leased' then return 0 end
if ARGV[4] ~= '' and redis.call('HGET', lk, 'annotator') ~= ARGV[4] then return -1 end
local id = redis.call('HGET', lk, 'task')
local project = redis.call('HGET', lk, 'project')
local tk = ARGV[1] .. ':task:' .. project .. ':' .. id
redis.call('HSET', lk, 'status', ARGV[3])
redis.call('EXPIRE', lk, 86400)
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('EXISTS', tk) == 1 then
  redis.call('HINCRBY', tk, 'active', -1)
  redis.call('SREM', ARGV[1] .. ':task_who:' .. project .. ':' .. id, redis.call('HGET', lk, 'annotator'))
  redis.call('ZADD', KEYS[1], (redis.call('HGET', tk, 'rank') or redis.call('HGET', tk, 'priority')), id)
  redis.call('ZADD', KEYS[2], redis.call('HGET', tk, 'queued_at'), id)
end
return 1
"""

_ANSWER = """
-- KEYS: leases, unproduced ; ARGV: prefix, lease_id, annotator, label, now, record ttl, produce hold,
-- regions (the answer's spans and boxes, human_tasks/regions.py; '' when none)
local lk = ARGV[1] .. ':lease:' .. ARGV[2]
local status = redis.call('HGET', lk, 'status')
if not status then return {'unknown'} end
if redis.call('HGET', lk, 'annotator') ~= ARGV[3] then return {'foreign'} end
if status == 'answered' then return {'duplicate'} end
if status ~= 'leased' or tonumber(redis.call('HGET', lk, 'expires')) < tonumber(ARGV[5]) then
  return {'expired'}
end
local id = redis.call('HGET', lk, 'task')
local project = redis.call('HGET', lk, 'project')
local tk = ARGV[1] .. ':task:' .. project .. ':' .. id
local ak = ARGV[1] .. ':task_answers:' .. project .. ':' .. id
redis.call('HSET', lk, 'status', 'answered', 'label', ARGV[4], 'answered_at', ARGV[5],
  'producing_until', tonumber(ARGV[5]) + tonumber(ARGV[7]))
redis.call('EXPIRE', lk, tonumber(ARGV[6]))
if ARGV[8] ~= '' then
  redis.call('HSET', lk, 'regions', ARGV[8])
  redis.call('HSET', ARGV[1] .. ':task_regions:' .. project .. ':' .. id, ARGV[3], ARGV[8])
end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
redis.call('HINCRBY', tk, 'active', -1)
redis.call('HSET', ak, ARGV[3], ARGV[4])
local answers = redis.call('HLEN', ak)
local required = tonumber(redis.call('HGET', tk, 'required'))
if answers >= required then
  return {'complete', redis.call('HGET', tk, 'payload'), unpack(redis.call('HGETALL', ak))}
end
return {'more', redis.call('HGET', tk, 'payload')}
"""

# KEYS: the lease ; ARGV: now, produce hold. Who may produce an answered lease's events again:
# only when they are not produced and nobody is producing them now (the first answer holds them
# for the hold; a retry or the upkeep takes them over after it).
_TAKE_OVER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'answered' then return 0 end
if redis.call('HGET', KEYS[1], 'produced') == '1' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'producing_until') or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'producing_until', tonumber(ARGV[1]) + tonumber(ARGV[2]))
return 1
"""

_ONE_MORE = """
-- a tie: one more annotator; KEYS: queue, queued_at ; ARGV: prefix, member, project
local tk = ARGV[1] .. ':task:' .. ARGV[3] .. ':' .. ARGV[2]
redis.call('HINCRBY', tk, 'required', 1)
redis.call('ZADD', KEYS[1], (redis.call('HGET', tk, 'rank') or redis.call('HGET', tk, 'priority')), ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('HGET', tk, 'queued_at'), ARGV[2])
return 1
"""


_UNTOUCHED = """
-- waiting tasks nobody has leased or answered (audits excluded), highest rank first, at most
-- ARGV[3]; KEYS: queue ; ARGV: prefix, project, limit ; returns their payloads
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)) do
  local tk = ARGV[1] .. ':task:' .. ARGV[2] .. ':' .. id
  if string.sub(id, 1, 2) == 'l:' and redis.call('HGET', tk, 'active') == '0'
     and redis.call('HLEN', ARGV[1] .. ':task_answers:' .. ARGV[2] .. ':' .. id) == 0 then
    table.insert(out, redis.call('HGET', tk, 'payload'))
  end
end
return out
"""

_WITHDRAW = """
-- removes a waiting task nobody has leased or answered; KEYS: queue, queued_at, done, task,
-- withdrawn, who, answers ; ARGV: member ; 1 when withdrawn (now or before: the final-label
-- fence publishes its label once), 0 when it is gone, leased or answered (people keep it)
if redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 1 then return 1 end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
if redis.call('HGET', KEYS[4], 'active') ~= '0' then return 0 end
if redis.call('HLEN', KEYS[7]) > 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('DEL', KEYS[4], KEYS[6], KEYS[7])
return 1
"""


@dataclass
class Lease:
    """A leased task."""

    lease_id: str
    task: events_pb2.TaskRouted
    expires_at: float


@dataclass
class Answered:
    """What an answer did: complete (all required answers in), or more needed."""

    task: events_pb2.TaskRouted
    complete: bool
    answers: dict[str, str]  # annotator -> label, when complete
    duplicate: bool = False
    lease: dict[str, str] | None = None


class TaskQueue:
    """Human-task queues of all projects under one key prefix."""

    def __init__(
        self, client: redis.Redis, key_prefix: str, lease_ttl_s: float, lease_scan: int = 200
    ) -> None:
        self.client = client
        self.prefix = key_prefix
        self.keys = QueueKeys(key_prefix)
        self.lease_ttl_s = lease_ttl_s
        self.lease_scan = lease_scan
        self._enqueue = client.register_script(_ENQUEUE)
        self._lease = client.register_script(_LEASE)
        self._requeue = client.register_script(_REQUEUE)
        self._answer = client.register_script(_ANSWER)
        self._one_more = client.register_script(_ONE_MORE)
        self._take_over = client.register_script(_TAKE_OVER)
        self._untouched = client.register_script(_UNTOUCHED)
        self._withdraw = client.register_script(_WITHDRAW)

    def enqueue(self, tasks: list[events_pb2.TaskRouted]) -> int:
        """Queue tasks not seen before (idempotent by task id: an item's review is queued at most
        once, ever). A review task (`review_of` set) is leased by none of the reviewed label's
        annotators and completes with the label under review as one answer. Returns how many
        were new."""
        now = time.time()
        try:
            pipe = self.client.pipeline(transaction=False)
            for task in tasks:
                project = task.ingested.item.project_id
                member = member_of(task)
                self._enqueue(
                    keys=[
                        self.keys.queue(project),
                        self.keys.queued_at(project),
                        self.keys.done(project),
                        self.keys.task(project, member),
                        self.keys.sequence(project),
                        self.keys.who(project, member),
                        self.keys.answers(project, member),
                    ],
                    args=[
                        member,
                        task.SerializeToString(),
                        task.priority,
                        task.annotators_required,
                        now,
                        project,
                        *_reviewed(task),
                    ],
                    client=pipe,
                )
            return sum(int(x) for x in pipe.execute())
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def lease(self, project_id: str, annotator_id: str) -> Lease | None:
        """The highest-priority task this annotator has not seen, leased for `lease_ttl_s`."""
        self.reap(project_id)
        now = time.time()
        lease_id = uuid.uuid4().hex
        expires = now + self.lease_ttl_s
        try:
            found = self._lease(
                keys=[
                    self.keys.queue(project_id),
                    self.keys.queued_at(project_id),
                    self.keys.leases(project_id),
                ],
                args=[self.prefix, annotator_id, lease_id, now, expires, self.lease_scan, project_id],
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        if not found:
            return None
        task = events_pb2.TaskRouted()
        task.ParseFromString(found[1])
        return Lease(lease_id, task, expires)

    def untouched(self, project_id: str, limit: int) -> list[events_pb2.TaskRouted]:
        """Up to `limit` waiting labeling tasks (not audits) that nobody has leased or answered,
        highest rank first: the ones a newly deployed model may take off people's hands."""
        try:
            payloads = self._untouched(
                keys=[self.keys.queue(project_id)], args=[self.prefix, project_id, limit]
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return [events_pb2.TaskRouted.FromString(p) for p in payloads]  # type: ignore[union-attr]

    def withdraw(self, project_id: str, item_id: str) -> bool:
        """Remove an item's labeling task if nobody has leased or answered it (atomically; it will
        not be queued again). True again for a task withdrawn before (a redelivered withdrawal;
        the final-label fence publishes its label once). False when it is gone, leased or
        answered: people keep it."""
        member = task_member(item_id, audit=False)
        try:
            done = self._withdraw(
                keys=[
                    self.keys.queue(project_id),
                    self.keys.queued_at(project_id),
                    self.keys.done(project_id),
                    self.keys.task(project_id, member),
                    self.keys.withdrawn(project_id),
                    self.keys.who(project_id, member),
                    self.keys.answers(project_id, member),
                ],
                args=[member],
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return bool(done)

    def release(self, lease_id: str, annotator_id: str) -> None:
        """Give a leased task back; FailedPrecondition if the lease is not this annotator's live lease."""
        project = self._lease_project(lease_id)
        try:
            done = self._requeue(
                keys=[self.keys.queue(project), self.keys.queued_at(project), self.keys.leases(project)],
                args=[self.prefix, lease_id, "released", annotator_id],
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        if done == -1:
            raise FailedPrecondition(f"lease {lease_id} is held by another annotator")
        if done == 0:
            raise FailedPrecondition(f"lease {lease_id} is no longer active (expired, released or answered)")

    def reap(self, project_id: str) -> int:
        """Re-queue the tasks of expired leases. Returns how many."""
        try:
            expired = self.client.zrangebyscore(self.keys.leases(project_id), "-inf", time.time())
            count = 0
            for raw in expired:  # type: ignore[union-attr]
                lease_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                count += int(
                    self._requeue(
                        keys=[
                            self.keys.queue(project_id),
                            self.keys.queued_at(project_id),
                            self.keys.leases(project_id),
                        ],
                        args=[self.prefix, lease_id, "expired", ""],
                    )
                    == 1
                )
                self.client.zrem(self.keys.leases(project_id), lease_id)
            return count
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def lease_info(self, lease_id: str) -> dict[str, str]:
        """The lease record; FailedPrecondition when unknown."""
        try:
            raw = self.client.hgetall(self.keys.lease(lease_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        if not raw:
            raise FailedPrecondition(f"unknown lease {lease_id!r}")
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]

    def _lease_project(self, lease_id: str) -> str:
        return self.lease_info(lease_id)["project"]

    def answer(self, lease_id: str, annotator_id: str, label: str, regions: str = "") -> Answered:
        """Record an answer under a live lease, with its stored spans and boxes (`regions`, from
        regions.encode_regions) in the same script. Raises FailedPrecondition for an unknown,
        foreign or expired lease; a repeated answer under the same lease returns `duplicate=True`."""
        info = self.lease_info(lease_id)
        try:
            result = self._answer(
                keys=[self.keys.leases(info["project"]), self.keys.unproduced(info["project"])],
                args=[
                    self.prefix,
                    lease_id,
                    annotator_id,
                    label,
                    time.time(),
                    LEASE_RECORD_TTL_S,
                    PRODUCE_HOLD_S,
                    regions,
                ],
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        status = result[0].decode()
        if status == "unknown":
            raise FailedPrecondition(f"unknown lease {lease_id!r}")
        if status == "foreign":
            raise FailedPrecondition(f"lease {lease_id} is held by another annotator")
        if status == "expired":
            raise FailedPrecondition(f"lease {lease_id} has expired or was released; lease the task again")
        if status == "duplicate":
            return Answered(events_pb2.TaskRouted(), False, {}, duplicate=True, lease=info)
        task = events_pb2.TaskRouted()
        task.ParseFromString(result[1])
        answers: dict[str, str] = {}
        if status == "complete":
            pairs = [x.decode() for x in result[2:]]
            answers = dict(zip(pairs[0::2], pairs[1::2], strict=True))
        return Answered(task, status == "complete", answers, lease=info)

    def one_more(self, task: events_pb2.TaskRouted) -> None:
        """A tie: require one more annotator and put the task back in the queue."""
        project_id = task.ingested.item.project_id
        try:
            self._one_more(
                keys=[self.keys.queue(project_id), self.keys.queued_at(project_id)],
                args=[self.prefix, member_of(task), project_id],
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def finish(self, task: events_pb2.TaskRouted) -> None:
        """Forget a finalized task (it stays in the done set so a redelivery is ignored)."""
        project_id = task.ingested.item.project_id
        member = member_of(task)
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.sadd(self.keys.done(project_id), member)
            pipe.delete(
                self.keys.task(project_id, member),
                self.keys.who(project_id, member),
                self.keys.answers(project_id, member),
                self.keys.regions(project_id, member),
            )
            pipe.zrem(self.keys.queue(project_id), member)
            pipe.zrem(self.keys.queued_at(project_id), member)
            pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def task_regions(self, project_id: str, member: str) -> dict[str, str]:
        """The stored spans and boxes of a live task's answers: annotator -> regions (answers that
        marked none are absent)."""
        try:
            raw = self.client.hgetall(self.keys.regions(project_id, member))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]

    def take_over(self, lease_id: str) -> bool:
        """Claim the production of an answered lease's events that were never marked produced,
        unless another call is producing them now (see PRODUCE_HOLD_S). True: the caller produces."""
        try:
            return bool(self._take_over(keys=[self.keys.lease(lease_id)], args=[time.time(), PRODUCE_HOLD_S]))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def count_annotation(self, project_id: str) -> None:
        """One more answer for the project's status (`annotations` counter)."""
        try:
            self.client.incr(self.keys.annotations(project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def let_go(self, lease_id: str) -> None:
        """Give up the production of an answered lease's events (producing them failed): a retry
        or the upkeep may take them over at once."""
        try:
            self.client.hdel(self.keys.lease(lease_id), "producing_until")
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def mark_produced(self, lease_id: str, project_id: str) -> None:
        """Record that the events of an answered lease were produced (for idempotent retries)."""
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.keys.lease(lease_id), "produced", "1")
            pipe.zrem(self.keys.unproduced(project_id), lease_id)
            pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def unproduced(self, project_id: str, answered_before: float, limit: int = 100) -> list[str]:
        """Leases answered before `answered_before` (epoch s) whose events were never marked
        produced (the answer is in Redis, its Kafka produce failed or the process died), oldest
        first: the upkeep publishes them."""
        try:
            raw = self.client.zrangebyscore(
                self.keys.unproduced(project_id), "-inf", answered_before, start=0, num=limit
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]  # type: ignore[union-attr]

    def forget_unproduced(self, project_id: str, lease_id: str) -> None:
        """Drop a lease from the unproduced index (its record expired: nothing left to publish)."""
        try:
            self.client.zrem(self.keys.unproduced(project_id), lease_id)
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def projects_with_queues(self) -> list[str]:
        """Project ids that have (or had) a queue, for gauges."""
        try:
            names = [k.decode() for k in self.client.scan_iter(match=f"{self.prefix}:queued_at:*", count=500)]
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return sorted({n.split(":")[-1] for n in names})


def _reviewed(task: events_pb2.TaskRouted) -> list[str]:
    """The enqueue script's review arguments: the label under review and its annotators."""
    if task.reason != events_pb2.TASK_REASON_REVIEW or not task.review_of.labels:
        return [""]
    return [task.review_of.labels[0], *task.review_of.annotators]


def task_state(
    queue: TaskQueue, project_id: str, member: str
) -> tuple[events_pb2.TaskRouted, dict[str, str], int] | None:
    """A live task's payload, answers so far and required count; None once finished. `member`
    is the queue's name of the task (a lease record's `task`)."""
    tk = queue.keys.task(project_id, member)
    try:
        pipe = queue.client.pipeline(transaction=False)
        pipe.hget(tk, "payload")
        pipe.hgetall(queue.keys.answers(project_id, member))
        pipe.hget(tk, "required")
        payload, answers, required = pipe.execute()
    except redis.RedisError as exc:
        raise unavailable(exc) from exc
    if payload is None:
        return None
    task = events_pb2.TaskRouted()
    task.ParseFromString(payload)
    return task, {k.decode(): v.decode() for k, v in answers.items()}, int(required)
