"""Ingest's item-id claims against the real Redis and Kafka: a claim left by an ingest killed
between claiming an item and producing it never makes the item a duplicate (the client would not
send it again, and the item would be lost); counted in the raw `items` topic."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from labelloop.core import redis_store, stream
from labelloop.core.errors import Contended
from labelloop.core.label_log import replay
from labelloop.core.progress import Progress
from labelloop.core.projects import ProjectStore
from labelloop.core.topics import ITEMS
from labelloop.ingest.ingestor import ACCEPTED, DUPLICATE, IngestLimits, Ingestor
from labelloop.stack import LocalStack
from labelloop.v1 import common_pb2

PROJECT = "claims"
TTL_S = 60.0


@pytest.fixture
def ingestor(stack: LocalStack, topic_prefix: str, redis_prefix: str) -> Iterator[Ingestor]:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    client = redis_store.connect(stack.redis_url, stack.redis_password)
    projects = ProjectStore(client, redis_prefix, cache_s=0)
    projects.create(common_pb2.ProjectSpec(project_id=PROJECT, labels=["a", "b"]))
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "ingest")
    try:
        yield Ingestor(
            projects, Progress(client, redis_prefix), client, producer, IngestLimits(pending_ttl_s=TTL_S)
        )
    finally:
        producer.close()
        keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def item(item_id: str) -> common_pb2.Item:
    return common_pb2.Item(
        item_id=item_id, project_id=PROJECT, content=common_pb2.Content(text=f"text {item_id}")
    )


def claim(ingestor: Ingestor, item_id: str, age_s: float) -> None:
    """The claim an ingest leaves when it is killed `age_s` ago between claim and produce."""
    key = ingestor.progress.items_key(PROJECT)
    ingestor.client.hset(key, item_id, f"pending:{time.time() - age_s:.6f}")


def produced(stack: LocalStack, prefix: str) -> Counter[str]:
    """Item ids of every raw record of `items` (not a last-wins view)."""
    return Counter(
        event.item.item_id for event in replay(stack.bootstrap_servers, prefix, ITEMS, project_id=PROJECT)
    )


def test_a_dead_ingest_claim_is_no_duplicate(
    ingestor: Ingestor, stack: LocalStack, topic_prefix: str
) -> None:
    claim(ingestor, "orphan", age_s=1.0)
    with pytest.raises(Contended, match=r"items 'orphan' are being accepted by another call.*retry"):
        ingestor.submit([item("orphan"), item("fresh")], "test")
    assert produced(stack, topic_prefix) == {"fresh": 1}, "the rest of the call is produced"

    # the client's retry, while the claim is young: the same answer, nothing produced twice
    with pytest.raises(Contended, match="'orphan'"):
        ingestor.submit([item("orphan"), item("fresh")], "test")

    # once the claim is older than the TTL, the retry takes it over
    claim(ingestor, "orphan", age_s=TTL_S + 1)
    results = ingestor.submit([item("orphan"), item("fresh")], "test")
    assert [(r.item_id, r.status) for r in results] == [("orphan", ACCEPTED), ("fresh", DUPLICATE)]
    assert produced(stack, topic_prefix) == {"fresh": 1, "orphan": 1}

    again = ingestor.submit([item("orphan")], "test")
    assert [r.status for r in again] == [DUPLICATE]
    assert produced(stack, topic_prefix) == {"fresh": 1, "orphan": 1}


class Concurrent(Ingestor):
    """Another call, holding the claim, produces the item while this call waits for it."""

    def _await_claims(self, busy, results) -> None:  # type: ignore[no-untyped-def]
        assert [i.item_id for _, i in busy] == ["racing"], "this call found the claim pending"
        self.client.hset(self.progress.items_key(PROJECT), "racing", "ok")
        super()._await_claims(busy, results)


def test_a_concurrent_claim_that_lands_is_a_duplicate(
    ingestor: Ingestor, stack: LocalStack, topic_prefix: str
) -> None:
    racing = Concurrent(
        ingestor.projects, ingestor.progress, ingestor.client, ingestor.producer, ingestor.limits
    )
    claim(racing, "racing", age_s=0.0)
    results = racing.submit([item("racing"), item("other")], "test")
    assert [(r.item_id, r.status) for r in results] == [("racing", DUPLICATE), ("other", ACCEPTED)]
    assert produced(stack, topic_prefix) == {"other": 1}, "the other call produces it, not this one"
