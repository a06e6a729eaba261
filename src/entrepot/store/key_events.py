"""Key creations and revocations, announced to every replica through Redis so that each reloads
its keys from the database at once: a key revoked on one replica is refused by all within a
second, instead of within the database refresh interval.

The announcement is a version number in Redis, bumped after the change is committed, and a
message on a channel. Each replica listens on the channel and, whether a message came or not,
reads the version at least every `POLL_SECONDS`: a message lost (a replica reconnecting at that
moment) is so made up for within that time. A version other than the last one seen means keys
changed: reload. The replica that made the change has reloaded already and does not again.

Redis failing costs only the speed: announcements are logged and dropped, and every replica
still finds the change at its periodic reload from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from entrepot.store.redis_work import FAILURES, RedisWork

POLL_SECONDS = 0.5
VERSION = "entrepot:keys:version"
CHANNEL = "entrepot:keys:changed"

log = logging.getLogger("entrepot.auth")


class KeyEvents:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._work = RedisWork(log, "key change announcements")
        self._seen: int | None = None  # the version whose keys are loaded; None: not known yet

    async def announce(self) -> None:
        """Tell every replica that keys changed; this one has reloaded them already."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(VERSION)
                pipe.publish(CHANNEL, b"")
                version, _ = await pipe.execute()
        except FAILURES as error:
            self._work.failed(error)
            return
        self._work.succeeded()
        if self._seen == version - 1:
            self._seen = version  # no other change in between: nothing left to load

    async def watch(self, reload: Callable[[], Awaitable[None]]) -> None:
        """Reload whenever another replica announces a change; runs until cancelled. The first
        version read reloads too: a change may have been announced before it was read."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    while True:
                        await self._check(reload)
                        await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=POLL_SECONDS
                        )
            except FAILURES as error:
                self._work.failed(error)
                await asyncio.sleep(POLL_SECONDS)

    async def _check(self, reload: Callable[[], Awaitable[None]]) -> None:
        version = int(await self._redis.get(VERSION) or 0)
        self._work.succeeded()
        if version != self._seen:
            self._seen = version
            await reload()
