"""The response cache of a fleet, in Redis: an answer kept by one replica is a hit on every other.

Each answer is a Redis string expiring with its TTL. `max_entries` holds for the whole fleet
through an index of the kept fingerprints, a sorted set ordered by last use (a counter, so the
order is exact whatever the replicas' clocks): keeping an answer past the cap evicts the least
recently used, as the memory cache does, so the index and the answers never outgrow it. Reading
and keeping are one server-side script each, so one round trip.

Redis only speeds answers up here: a failure is a miss, an answer not kept, and a line in the
log; it never fails a request. Keeping an answer runs in the background so the client does not
wait for it; another replica may miss for the moment the write takes after the answer left.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from entrepot.config import CacheConfig
from entrepot.routing.cache import Cache
from entrepot.store.redis_work import FAILURES, RedisWork

PREFIX = "entrepot:cache:"
ENTRY = PREFIX + "e:"
INDEX = PREFIX + "lru"
CLOCK = PREFIX + "clock"

# KEYS: entry, index, clock. ARGV: fingerprint.
_GET = """
local body = redis.call('GET', KEYS[1])
if body then
  redis.call('ZADD', KEYS[2], 'XX', redis.call('INCR', KEYS[3]), ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return body
"""

# KEYS: entry, index, clock. ARGV: body, ttl in ms, fingerprint, max entries, entry prefix.
_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[3])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local evicted = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #evicted, 2 do
    redis.call('DEL', ARGV[5] .. evicted[i])
  end
end
return excess
"""

log = logging.getLogger("entrepot.cache")


class SharedCache(Cache):
    def __init__(self, config: CacheConfig, redis: Redis) -> None:
        super().__init__(config)
        self._get = redis.register_script(_GET)
        self._put = redis.register_script(_PUT)
        self._work = RedisWork(log, "shared response cache")

    async def get(self, fingerprint: str) -> bytes | None:
        work = self._work
        if not work.available:
            return None
        try:
            body: bytes | None = await self._get(
                keys=[ENTRY + fingerprint, INDEX, CLOCK], args=[fingerprint]
            )
        except FAILURES as error:
            work.failed(error)
            return None
        work.succeeded()
        return body

    def put(self, fingerprint: str, body: bytes, ttl: float) -> None:
        if self._work.available:
            self._work.spawn(self._keep(fingerprint, body, ttl))

    async def _keep(self, fingerprint: str, body: bytes, ttl: float) -> None:
        await self._put(
            keys=[ENTRY + fingerprint, INDEX, CLOCK],
            args=[body, max(1, int(ttl * 1000)), fingerprint, self._config.max_entries, ENTRY],
        )

    async def drain(self) -> None:
        await self._work.drain()
