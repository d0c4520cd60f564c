"""Redis from the local stack: a round trip under a per-test key prefix."""

from __future__ import annotations

import redis

from labelloop.stack import LocalStack


def test_round_trip_with_prefixed_keys(stack: LocalStack, redis_prefix: str) -> None:
    client = redis.Redis.from_url(stack.redis_url, password=stack.redis_password, decode_responses=True)
    try:
        client.set(f"{redis_prefix}:item:1", "label=spam", ex=60)
        client.hset(f"{redis_prefix}:counts", mapping={"spam": 3, "ham": 5})
        client.zadd(f"{redis_prefix}:queue", {"task-a": 0.9, "task-b": 0.1})

        assert client.get(f"{redis_prefix}:item:1") == "label=spam"
        assert 0 < client.ttl(f"{redis_prefix}:item:1") <= 60
        assert client.hgetall(f"{redis_prefix}:counts") == {"spam": "3", "ham": "5"}
        assert client.zrange(f"{redis_prefix}:queue", 0, -1, desc=True) == ["task-a", "task-b"]
        assert sorted(client.scan_iter(match=f"{redis_prefix}:*")) == [
            f"{redis_prefix}:counts",
            f"{redis_prefix}:item:1",
            f"{redis_prefix}:queue",
        ]
    finally:
        client.delete(*client.scan_iter(match=f"{redis_prefix}:*"))
        client.close()
