"""Console sessions logged out anywhere in a fleet, kept in Redis until they would have expired.

A console session is a signed cookie that every replica accepts without asking anyone, so a
logout has to be told to the others: the replica that ends a session writes its nonce here with
the session's own expiry, and every replica looks the nonce up before honouring a cookie.

Redis failing must not lock the operator out of the console when it is most needed (an outage),
so a failed lookup counts as "not logged out elsewhere" and is logged; the replica's own record of
the sessions it ended still applies, and the session's lifetime bounds the rest.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis

from entrepot.store.redis_work import FAILURES, RedisWork

PREFIX = "entrepot:console:ended:"

log = logging.getLogger("entrepot.console")


class EndedSessions:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._work = RedisWork(log, "console logouts shared with the fleet")

    async def end(self, nonce: str, expires: int) -> bool:
        """Record a logout for every replica; False when Redis did not take it."""
        seconds = max(1, expires - int(time.time()))
        try:
            await self._redis.set(PREFIX + nonce, b"1", ex=seconds)
        except FAILURES as error:
            self._work.failed(error)
            return False
        self._work.succeeded()
        return True

    async def ended(self, nonce: str) -> bool:
        """Whether any replica logged this session out."""
        if not self._work.available:
            return False
        try:
            found = bool(await self._redis.exists(PREFIX + nonce))
        except FAILURES as error:
            self._work.failed(error)
            return False
        self._work.succeeded()
        return found
