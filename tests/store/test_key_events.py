"""Key changes announced through a real Redis: two `KeyEvents` on one server stand for two
replicas, each counting the reloads it was asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from entrepot.store.key_events import POLL_SECONDS, VERSION, KeyEvents
from tests.backing import Backing, start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Backing]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


class Reloads:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1

    async def reach(self, count: int) -> None:
        for _ in range(200):
            if self.count >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{self.count} reloads, not {count}")


def test_a_change_announced_by_one_replica_reloads_the_other_once(
    redis_server: Backing,
) -> None:
    async def main() -> None:
        a, b = (
            KeyEvents(Redis.from_url(redis_server.url)),
            KeyEvents(Redis.from_url(redis_server.url)),
        )
        reloads_a, reloads_b = Reloads(), Reloads()
        watchers = [
            asyncio.create_task(a.watch(reloads_a)),
            asyncio.create_task(b.watch(reloads_b)),
        ]
        await reloads_a.reach(1)  # the first version read: whatever came before is loaded
        await reloads_b.reach(1)
        await a.announce()
        await reloads_b.reach(2)
        await asyncio.sleep(POLL_SECONDS * 2)
        assert (reloads_a.count, reloads_b.count) == (1, 2)  # A had reloaded before announcing
        for watcher in watchers:
            watcher.cancel()

    asyncio.run(main())


def test_a_version_bumped_without_a_message_is_found_by_polling(redis_server: Backing) -> None:
    """A replica that was reconnecting when the message went out still reloads."""

    async def main() -> None:
        events, reloads = KeyEvents(Redis.from_url(redis_server.url)), Reloads()
        watcher = asyncio.create_task(events.watch(reloads))
        await reloads.reach(1)
        await Redis.from_url(redis_server.url).incr(VERSION)
        await reloads.reach(2)
        watcher.cancel()

    asyncio.run(main())


def test_without_redis_an_announcement_is_dropped_and_watching_goes_on(
    redis_server: Backing,
) -> None:
    async def main() -> None:
        events, reloads = KeyEvents(Redis.from_url(redis_server.url)), Reloads()
        redis_server.stop()
        watcher = asyncio.create_task(events.watch(reloads))
        await events.announce()
        await asyncio.sleep(POLL_SECONDS * 2)
        assert not watcher.done() and reloads.count == 0
        watcher.cancel()

    asyncio.run(main())
