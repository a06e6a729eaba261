"""The fleet's response cache on a real Redis: two caches on one server stand for two replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from entrepot.config import CacheConfig
from entrepot.routing.shared_cache import INDEX, PREFIX, SharedCache
from tests.backing import Backing, start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Backing]:
    """A Redis of the test's own: the cap is fleet-wide, so no other test's entries count."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


def _replicas(url: str, max_entries: int = 100) -> tuple[Redis, SharedCache, SharedCache]:
    redis = Redis.from_url(url)
    config = CacheConfig(max_entries=max_entries)
    return redis, SharedCache(config, Redis.from_url(url)), SharedCache(config, Redis.from_url(url))


def test_an_answer_kept_by_one_replica_is_a_hit_on_another(redis_server: Backing) -> None:
    async def main() -> None:
        redis, a, b = _replicas(redis_server.url)
        assert await b.get("q1") is None
        a.put("q1", b'{"answer": 1}', 60)
        await a.drain()
        assert await b.get("q1") == b'{"answer": 1}'
        assert await b.get("q2") is None
        assert 59_000 < await redis.pttl(PREFIX + "e:q1") <= 60_000

    asyncio.run(main())


def test_the_cap_holds_for_the_fleet_and_evicts_the_least_recently_used(
    redis_server: Backing,
) -> None:
    async def main() -> None:
        redis, a, b = _replicas(redis_server.url, max_entries=3)
        for i, cache in enumerate((a, b, a)):
            cache.put(f"q{i}", f"a{i}".encode(), 60)
            await cache.drain()
        assert await b.get("q0") == b"a0"  # q0 is now the most recently used; q1 the least
        b.put("q3", b"a3", 60)
        await b.drain()
        assert [await a.get(f"q{i}") for i in range(4)] == [b"a0", None, b"a2", b"a3"]
        assert await redis.zcard(INDEX) == 3
        assert len(await redis.keys(PREFIX + "e:*")) == 3

    asyncio.run(main())


def test_an_answer_expires_with_its_ttl_and_leaves_the_index(redis_server: Backing) -> None:
    async def main() -> None:
        redis, a, b = _replicas(redis_server.url)
        a.put("short", b"soon gone", 0.2)
        a.put("long", b"kept", 60)
        await a.drain()
        await asyncio.sleep(0.5)
        assert await b.get("short") is None
        assert await b.get("long") == b"kept"
        assert await redis.zrange(INDEX, 0, -1) == [b"long"]

    asyncio.run(main())


def test_redis_down_is_a_miss_and_an_answer_not_kept(redis_server: Backing) -> None:
    async def main() -> None:
        _, a, _ = _replicas(redis_server.url)
        a.put("q", b"kept", 60)
        await a.drain()
        redis_server.stop()
        assert await a.get("q") is None
        assert await a.get("q") is None  # skipped for a while after a failure: still a miss
        a.put("other", b"lost", 60)
        await a.drain()

    asyncio.run(main())
