"""The final-label fence: the only place an item's final label is decided and published.

Whoever decides (routing for an auto-label, human-tasks for consensus or for a withdrawn task),
the label goes through :class:`FinalLabelWriter`, which

- claims the item in Redis atomically (one Lua script per item): the FIRST decision wins;
- publishes the label to `labels` only when the claim is new, or when it is the same decision
  again and its earlier publication was never confirmed (a redelivery after a crash between the
  claim and the flush): so a redelivery re-publishes at most what it may have lost;
- drops any other decision for a finalized item and counts it
  (``labelloop_final_labels_dropped{project, source, reason}``);
- never lets a model's label replace a person's: an item routed to people is *reserved* for them
  (``Claim.people``, by routing); only the withdrawal of an untouched task (the
  human-tasks queue decides that atomically) may then finalize it with a model's label;
- owns the bookkeeping every finalization needs: the progress sets (`labeled:<project>:<source>`,
  see core/progress.py, written inside the same script), the ``labelloop_labels_finalized`` metric
  and the emit to `labels`.

State (Redis, under the key prefix): ``final_labels:<project>`` is a hash item id -> state. Item
ids are hash fields, so no item id can collide with another key. A state is ``P`` (reserved for
people), ``D<decision>`` (decided, publication not yet confirmed) or ``E<decision>`` (decided and
flushed to Kafka); a decision is ``<source>:<labels, comma-separated>``.

Crash semantics: claim, then emit, then flush (in a consume loop: commit the transaction that
holds the label and the consumed offsets), then :meth:`FinalLabelWriter.confirm`. A crash before
the commit leaves ``D`` and an aborted (invisible) first attempt: the redelivered input
re-publishes the same decision once. A crash between the commit and the confirm leaves ``D`` with
the label in the log: a later proposal of the same decision (human-tasks' retried answer or its
upkeep, which republish an answer whose production was never marked done; a rescore) would
publish it a second time. So the writer, given the log (``published``, a
:class:`~labelloop.core.label_log.PublishedLabels`), reads the `labels` topic (read committed)
from the claim's time (``final_labels_at:<project>``, kept while a decision is unconfirmed) before
publishing a decision again, and only confirms it when it is there. (Found by `make test`'s chaos
run: one item with two human final-label records after human-tasks was killed.) Without it (unit
tests), ``D`` always publishes again.

A redelivery need not decide as the aborted attempt did: routing reads the threshold when it
handles a prediction, and a deploy or a move may have changed it since (or a vote the combined
scores). Its proposal then meets an unconfirmed model decision (``UNSETTLED``), which only that
attempt could have published: dropping the proposal left the item with neither a label nor a
task (the likely cause of a chaos run of `make test` that ended with 11 items never labeled after
routing was killed). Routing passes ``relabel``, and the first decision is published instead
(:meth:`FinalLabelWriter.claim`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from google.protobuf.message import Message

from labelloop.core import metrics
from labelloop.core.progress import Progress
from labelloop.core.redis_store import Keys, unavailable
from labelloop.core.topics import LABELS, Topic, item_key
from labelloop.v1 import common_pb2, events_pb2

if TYPE_CHECKING:
    from labelloop.core.label_log import PublishedLabels

log = logging.getLogger(__name__)

PEOPLE = "P"

# KEYS: fence hash, labeled set of the decision's source, claim times ; ARGV: item id, proposal
# ('P' or a decision), over_people ('1' lets a decision replace a reservation for people), now (ms)
_CLAIM = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
local unconfirmed_model = v and string.sub(v, 1, 7) == 'Dmodel:'
if ARGV[2] == 'P' then
  if not v then redis.call('HSET', KEYS[1], ARGV[1], 'P') return 'new' end
  if v == 'P' then return 'again' end
  if unconfirmed_model then return 'unsettled' end
  return 'final'
end
if (not v) or (v == 'P' and ARGV[3] == '1') then
  redis.call('HSET', KEYS[1], ARGV[1], 'D' .. ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
  redis.call('SADD', KEYS[2], ARGV[1])
  return 'new'
end
if v == 'P' then return 'people' end
if string.sub(v, 2) == ARGV[2] then
  if string.sub(v, 1, 1) == 'D' then return 'again' end
  return 'done'
end
if unconfirmed_model and string.sub(ARGV[2], 1, 6) == 'model:' then return 'unsettled' end
return 'conflict'
"""

# KEYS: fence hash, claim times ; ARGV: item id, decision
_CONFIRM = """
if redis.call('HGET', KEYS[1], ARGV[1]) == 'D' .. ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], 'E' .. ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

_SOURCES = {common_pb2.LABEL_SOURCE_MODEL: "model", common_pb2.LABEL_SOURCE_HUMAN: "human"}


class Outcome(enum.Enum):
    """What the fence did with one proposal."""

    NEW = "new"  # claimed now: publish (a reservation: route to people)
    AGAIN = "again"  # the same decision as before, publication unconfirmed: publish again
    DONE = "done"  # the same decision, already published: nothing to publish
    CONFLICT = "conflict"  # another decision came first: dropped
    PEOPLE = "people"  # the item is reserved for people: a model's label is dropped
    FINAL = "final"  # (a reservation) the item already has a final label: no task
    # a model decision came first and its publication is unconfirmed: with a `relabel`, the
    # proposal is replaced by that decision (AGAIN); without, FINAL or CONFLICT
    UNSETTLED = "unsettled"

    @property
    def publish(self) -> bool:
        return self in (Outcome.NEW, Outcome.AGAIN)


def source_name(label: events_pb2.LabelFinalized) -> str:
    """ "model" or "human" (the progress sets' and metrics' name of a label's source)."""
    try:
        return _SOURCES[label.source]
    except KeyError:
        raise ValueError(f"a final label needs source MODEL or HUMAN, got {label.source}") from None


def decision_of(label: events_pb2.LabelFinalized) -> str:
    """The decision a label stands for: its source and labels (what "the same decision" compares)."""
    return f"{source_name(label)}:{','.join(label.labels)}"


Emit = Callable[[Topic, str, Message], None]
#: Builds the model's final label with these labels for a claim (the item's prediction at hand),
#: or None when it cannot (see :meth:`FinalLabelWriter.claim`).
Relabel = Callable[["Claim", list[str]], "events_pb2.LabelFinalized | None"]


@dataclass(frozen=True)
class Claim:
    """One proposal to the fence: a final label, or (``label`` None) a reservation for people."""

    project_id: str
    item_id: str
    label: events_pb2.LabelFinalized | None = None
    over_people: bool = False  # a withdrawal: the queue removed the untouched task atomically

    @staticmethod
    def final(label: events_pb2.LabelFinalized, *, over_people: bool = False) -> Claim:
        item = label.ingested.item
        return Claim(item.project_id, item.item_id, label, over_people)

    @staticmethod
    def people(project_id: str, item_id: str) -> Claim:
        return Claim(project_id, item_id)


def published(claims: Sequence[Claim], outcomes: Sequence[Outcome]) -> list[events_pb2.LabelFinalized]:
    """The final labels that :meth:`FinalLabelWriter.claim` emitted (to confirm after the flush)."""
    return [c.label for c, o in zip(claims, outcomes, strict=True) if c.label is not None and o.publish]


class FinalLabelWriter:
    """Decides, publishes and counts final labels (see the module doc). Thread-safe (a Redis
    client is); callers supply how to emit (``Batch.emit`` or ``EventProducer.send``)."""

    def __init__(
        self, client: redis.Redis, key_prefix: str, published: PublishedLabels | None = None
    ) -> None:
        self.client = client
        self.published = published
        self.keys = Keys(key_prefix)
        self.progress = Progress(client, key_prefix)
        self._claim = client.register_script(_CLAIM)
        self._confirm = client.register_script(_CONFIRM)

    def fence_key(self, project_id: str) -> str:
        """The project's fence hash (item id -> state)."""
        return self.keys("final_labels", project_id)

    def claimed_key(self, project_id: str) -> str:
        """The project's claim times (item id -> epoch ms) of decisions not yet confirmed."""
        return self.keys("final_labels_at", project_id)

    def claim(
        self,
        claims: list[Claim],
        emit: Emit,
        relabel: Relabel | None = None,
        emitted: set[Any] | None = None,
    ) -> list[Outcome]:
        """Submit proposals in order (one Redis round trip), emit the final labels to publish
        (to `labels`, keyed by item), count finalizations and drops; the outcome of each. The
        caller flushes, then calls :meth:`confirm` with :func:`published` of the same call.
        `emitted` holds the (project, item) whose label the caller's transaction already emits
        (`Batch.claims`: earlier calls of the same transaction): their label is not emitted
        again; the items this call emits are added to it.

        A proposal that meets a model's decision whose publication is unconfirmed (UNSETTLED)
        may be a redelivery whose first attempt decided otherwise and was aborted: routing
        re-reads a prediction after a crash under a threshold moved since, and the item would
        then have a decision in the fence that nobody publishes (no task, no label: stuck). With
        `relabel`, such a claim is replaced in `claims` by that decision's label for the same
        prediction and goes on as AGAIN (published unless this call or the log holds it);
        without, it is FINAL (a reservation) or CONFLICT (a decision), as any later proposal."""
        if not claims:
            return []
        now = str(int(time.time() * 1000))
        try:
            pipe = self.client.pipeline(transaction=False)
            for claim in claims:
                fence = self.fence_key(claim.project_id)
                at = self.claimed_key(claim.project_id)
                if claim.label is None:
                    self._claim(keys=[fence, fence, at], args=[claim.item_id, PEOPLE, "0", now], client=pipe)
                    continue
                labeled = self.progress.labeled_key(claim.project_id, source_name(claim.label))
                over = "1" if claim.over_people else "0"
                self._claim(
                    keys=[fence, labeled, at],
                    args=[claim.item_id, decision_of(claim.label), over, now],
                    client=pipe,
                )
            raw = pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        outcomes = [Outcome(r.decode() if isinstance(r, bytes) else str(r)) for r in raw]
        self._settle(claims, outcomes, relabel)
        emitted = set() if emitted is None else emitted
        for i, (claim, outcome) in enumerate(zip(claims, outcomes, strict=True)):
            if claim.label is None:
                continue
            where = (claim.project_id, claim.item_id)
            if outcome is Outcome.AGAIN and where in emitted:  # twice in one call: publish once
                outcome = outcomes[i] = Outcome.DONE
            if outcome.publish:
                emitted.add(where)
        self._already_published(claims, outcomes)
        for claim, outcome in zip(claims, outcomes, strict=True):
            if claim.label is None:
                continue
            source = source_name(claim.label)
            if outcome.publish:
                emit(LABELS, item_key(claim.project_id, claim.item_id), claim.label)
            if outcome is Outcome.NEW:
                metrics.LABELS_FINALIZED.labels(claim.project_id, source).inc()
            elif outcome in (Outcome.CONFLICT, Outcome.PEOPLE):
                metrics.FINAL_LABELS_DROPPED.labels(claim.project_id, source, outcome.value).inc()
        return outcomes

    def _settle(self, claims: list[Claim], outcomes: list[Outcome], relabel: Relabel | None) -> None:
        """Resolve UNSETTLED outcomes in place (see :meth:`claim`)."""
        unsettled = [i for i, o in enumerate(outcomes) if o is Outcome.UNSETTLED]
        if not unsettled:
            return
        states: list[str | None] = [None] * len(unsettled)
        if relabel is not None:
            states = [self.state(claims[i].project_id, claims[i].item_id) for i in unsettled]
        for i, state in zip(unsettled, states, strict=True):
            outcomes[i] = Outcome.FINAL if claims[i].label is None else Outcome.CONFLICT
            if relabel is None or state is None or not state.startswith("Dmodel:"):
                continue  # (confirmed or replaced since the script ran)
            stored = [label for label in state[len("Dmodel:") :].split(",") if label]  # [] : all off
            label = relabel(claims[i], stored)
            if label is not None and decision_of(label) == state[1:]:
                claims[i] = Claim.final(label)
                outcomes[i] = Outcome.AGAIN
                log.warning(
                    "%s/%s: the model's decision %r was claimed but never confirmed; published again",
                    claims[i].project_id,
                    claims[i].item_id,
                    stored,
                )

    def _already_published(self, claims: Sequence[Claim], outcomes: list[Outcome]) -> None:
        """Turn AGAIN into DONE (and confirm it) for the decisions the log already holds: their
        first publication was committed, only its confirmation was lost."""
        again = [i for i, o in enumerate(outcomes) if o is Outcome.AGAIN and claims[i].label is not None]
        if self.published is None or not again:
            return
        by_project: dict[str, list[int]] = {}
        for i in again:
            by_project.setdefault(claims[i].project_id, []).append(i)
        found: list[events_pb2.LabelFinalized] = []
        for project_id, indexes in by_project.items():
            items = [claims[i].item_id for i in indexes]
            try:
                times = self.client.hmget(self.claimed_key(project_id), items)
            except redis.RedisError as exc:
                raise unavailable(exc) from exc
            # (a decision claimed before the claim times were kept: searched from the start)
            claimed = {item: int(t) if t else 0 for item, t in zip(items, times, strict=True)}
            records = self.published.records(project_id, claimed)
            for i in indexes:
                label = claims[i].label
                assert label is not None
                if any(decision_of(r) == decision_of(label) for r in records.get(claims[i].item_id, ())):
                    outcomes[i] = Outcome.DONE
                    found.append(label)
        self.confirm(found)

    def finalize(
        self,
        labels: Sequence[events_pb2.LabelFinalized],
        emit: Emit,
        *,
        over_people: bool = False,
        emitted: set[Any] | None = None,
    ) -> list[Outcome]:
        """:meth:`claim` for final labels only (``over_people``: withdrawals of untouched tasks)."""
        claims = [Claim.final(label, over_people=over_people) for label in labels]
        return self.claim(claims, emit, emitted=emitted)

    def confirm(self, labels: Sequence[events_pb2.LabelFinalized]) -> None:
        """Record that these labels' publication is flushed, so a redelivery does not publish
        them again. Call only after the flush."""
        if not labels:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for label in labels:
                item = label.ingested.item
                self._confirm(
                    keys=[self.fence_key(item.project_id), self.claimed_key(item.project_id)],
                    args=[item.item_id, decision_of(label)],
                    client=pipe,
                )
            pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def state(self, project_id: str, item_id: str) -> str | None:
        """The raw fence state of an item (None: nothing decided); for tests and diagnostics."""
        try:
            raw = self.client.hget(self.fence_key(project_id), item_id)
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return raw.decode() if isinstance(raw, bytes) else None
