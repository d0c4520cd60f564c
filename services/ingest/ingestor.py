"""Accepting items: validate, deduplicate by item id, produce to `items`.

Idempotency: `<prefix>:items:<project>` maps item id -> "ok" once produced, or
"pending:<epoch>" while a producer holds it. A pending claim older than `pending_ttl_s` (a
crashed ingest) may be taken over, so a crash between claim and produce loses nothing: the
client's retry is accepted. A claim is released if producing fails.

Only "ok" makes a duplicate. A younger pending claim of another call is either a concurrent
submit of the same id (it turns "ok" within milliseconds: waited for, up to `busy_wait_s`) or
the claim of an ingest killed between claim and produce, whose item is not in the stream: the
call then fails with `Contended` (gRPC UNAVAILABLE, naming the items) after producing the rest,
and the client's retry gets those as duplicates and takes the dead claim over once it is stale.
Answering DUPLICATE there would lose the item: the client would never send it again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from labelloop.core import metrics
from labelloop.core.errors import Contended, DependencyUnavailable, InvalidArgument, NotFound
from labelloop.core.identifiers import is_project_id
from labelloop.core.media import MediaStore
from labelloop.core.progress import Progress
from labelloop.core.projects import ProjectStore, is_archived
from labelloop.core.redis_store import unavailable
from labelloop.core.stream import EventProducer, now_timestamp
from labelloop.core.topics import ITEMS, item_key
from labelloop.v1 import common_pb2, events_pb2, ingest_pb2

log = logging.getLogger(__name__)
ACCEPTED = ingest_pb2.SUBMIT_STATUS_ACCEPTED
DUPLICATE = ingest_pb2.SUBMIT_STATUS_DUPLICATE
REJECTED = ingest_pb2.SUBMIT_STATUS_REJECTED


@dataclass
class IngestLimits:
    """Size limits applied by validation."""

    max_text_bytes: int = 512 * 1024
    max_metadata_bytes: int = 16_384
    pending_ttl_s: float = 60.0
    busy_wait_s: float = 1.0  # how long a call waits for another call's claim to turn "ok"


class Ingestor:
    """Accepts batches of items; thread-safe (one producer, Redis pipelines per call)."""

    def __init__(
        self,
        projects: ProjectStore,
        progress: Progress,
        client: redis.Redis,
        producer: EventProducer,
        limits: IngestLimits,
        media: MediaStore | None = None,
    ) -> None:
        self.projects = projects
        self.progress = progress
        self.client = client
        self.producer = producer
        self.limits = limits
        self.media = media
        """Checks media references (type, size, digest); None refuses every media item."""

    def submit(self, items: Sequence[common_pb2.Item], channel: str) -> list[ingest_pb2.ItemResult]:
        """Validate, deduplicate and produce `items`; one result per item, in order.

        Raises DependencyUnavailable (nothing accepted) when Redis or Kafka is down.
        """
        from labelloop.ingest.validation import validate_item

        results: list[ingest_pb2.ItemResult] = []
        valid: list[tuple[int, common_pb2.Item]] = []
        for index, item in enumerate(items):
            result = ingest_pb2.ItemResult(index=index, item_id=item.item_id)
            results.append(result)
            known = "-"  # metrics are labeled only with existing projects (bounded series)
            try:
                if not item.project_id:
                    raise InvalidArgument("item.project_id", "is empty")
                if not is_project_id(item.project_id):
                    raise InvalidArgument("item.project_id", f"unknown project {item.project_id!r}")
                try:
                    project = self.projects.get(item.project_id)
                except NotFound:
                    raise InvalidArgument("item.project_id", f"unknown project {item.project_id!r}") from None
                known = project.spec.project_id
                if is_archived(project):
                    raise InvalidArgument(
                        "item.project_id", f"project {known!r} is archived: it accepts no items"
                    )
                validate_item(item, project, self.limits.max_text_bytes, self.limits.max_metadata_bytes)
                if item.content.WhichOneof("body") == "media":
                    if self.media is None:
                        raise InvalidArgument("item.content.media", "this ingest has no media store")
                    self.media.check(item.content.media)
            except InvalidArgument as exc:
                result.status = REJECTED
                result.error_field = exc.field
                result.error_message = str(exc)
                metrics.ITEMS_REJECTED.labels(known, exc.field).inc()
                continue
            if not item.item_id:
                assigned = common_pb2.Item()
                assigned.CopyFrom(item)
                assigned.item_id = uuid.uuid4().hex
                item = assigned
                result.item_id = item.item_id
            valid.append((index, item))
        if not valid:
            return results
        claimed, busy = self._claim(valid, results)
        if claimed:
            self._produce(claimed, channel)
        if busy:
            self._await_claims(busy, results)
        return results

    def _claim(
        self, valid: list[tuple[int, common_pb2.Item]], results: list[ingest_pb2.ItemResult]
    ) -> tuple[list[tuple[int, common_pb2.Item]], list[tuple[int, common_pb2.Item]]]:
        """Claim each new item id with HSETNX and take over stale pending claims (both returned
        first, ACCEPTED); the items of another call's younger pending claim are returned second
        (`busy`); the rest are duplicates."""
        now = time.time()
        busy_at: set[int] = set()
        pending = f"pending:{now:.6f}"
        try:
            pipe = self.client.pipeline(transaction=False)
            for _, item in valid:
                pipe.hsetnx(self.progress.items_key(item.project_id), item.item_id, pending)
            fresh = pipe.execute()
            taken = {pos for pos, ok in enumerate(fresh) if ok}
            taken_keys = {(valid[pos][1].project_id, valid[pos][1].item_id) for pos in taken}
            others = [pos for pos in range(len(valid)) if pos not in taken]
            if others:
                pipe = self.client.pipeline(transaction=False)
                for pos in others:
                    pipe.hget(self.progress.items_key(valid[pos][1].project_id), valid[pos][1].item_id)
                for pos, value in zip(others, pipe.execute(), strict=True):
                    item = valid[pos][1]
                    key = (item.project_id, item.item_id)
                    if key in taken_keys or not value or not value.startswith(b"pending:"):
                        continue
                    if now - float(value.split(b":", 1)[1]) > self.limits.pending_ttl_s:
                        self.client.hset(self.progress.items_key(item.project_id), item.item_id, pending)
                        taken.add(pos)
                        taken_keys.add(key)
                    else:
                        busy_at.add(pos)
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        claimed, busy = [], []
        for pos, (index, item) in enumerate(valid):
            if pos in taken:
                claimed.append((index, item))
                results[index].status = ACCEPTED
            elif pos in busy_at:
                busy.append((index, item))
            else:
                results[index].status = DUPLICATE
                metrics.ITEMS_DUPLICATE.labels(item.project_id).inc()
        return claimed, busy

    def _await_claims(
        self, busy: list[tuple[int, common_pb2.Item]], results: list[ingest_pb2.ItemResult]
    ) -> None:
        """Wait up to `busy_wait_s` for other calls' pending claims on `busy` to turn "ok" (then
        they are duplicates); raise Contended naming those still pending (module doc)."""
        deadline = time.monotonic() + self.limits.busy_wait_s
        waiting = list(busy)
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                for _, item in waiting:
                    pipe.hget(self.progress.items_key(item.project_id), item.item_id)
                values = pipe.execute()
            except redis.RedisError as exc:
                raise unavailable(exc) from exc
            still = []
            for (index, item), value in zip(waiting, values, strict=True):
                if value == b"ok":
                    results[index].status = DUPLICATE
                    metrics.ITEMS_DUPLICATE.labels(item.project_id).inc()
                else:  # still pending, or released by a produce that failed: not in the stream
                    still.append((index, item))
            waiting = still
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if waiting:
            ids = ", ".join(repr(item.item_id) for _, item in waiting[:3])
            more = f" and {len(waiting) - 3} more" if len(waiting) > 3 else ""
            raise Contended(
                f"items {ids}{more} are being accepted by another call, or were claimed by an ingest "
                f"that stopped before producing them (taken over {self.limits.pending_ttl_s:g}s "
                "after their claim): retry; the items of this call that were accepted come back as "
                "duplicates"
            )

    def _produce(self, claimed: list[tuple[int, common_pb2.Item]], channel: str) -> None:
        at = now_timestamp()
        try:
            for _, item in claimed:
                event = events_pb2.ItemIngested(
                    item=item, ingested_at=at, channel=channel, arrival=events_pb2.Arrival()
                )
                self.producer.send(ITEMS, item_key(item.project_id, item.item_id), event)
            self.producer.flush()
        except DependencyUnavailable:
            self._release(claimed)
            raise
        by_project: dict[str, list[str]] = {}  # project -> [item id, "ok", item id, "ok", ...]
        for _, item in claimed:
            by_project.setdefault(item.project_id, []).extend((item.item_id, "ok"))
        try:
            pipe = self.client.pipeline(transaction=False)
            for project_id, marks in by_project.items():
                pipe.hset(self.progress.items_key(project_id), items=marks)
            pipe.execute()
        except redis.RedisError as exc:
            # Produced already: the pending claim expires into a takeover at worst (a duplicate
            # item event, which downstream handles idempotently by item id).
            log.warning("could not mark %d items as produced: %s", len(claimed), exc)
        for project_id, marks in by_project.items():
            metrics.ITEMS_INGESTED.labels(project_id, channel).inc(len(marks) // 2)

    def _release(self, claimed: list[tuple[int, common_pb2.Item]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for _, item in claimed:
                pipe.hdel(self.progress.items_key(item.project_id), item.item_id)
            pipe.execute()
        except redis.RedisError:
            log.warning(
                "could not release %d claims; they expire after %ss", len(claimed), self.limits.pending_ttl_s
            )
