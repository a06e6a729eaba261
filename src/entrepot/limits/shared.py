"""Counters shared through Redis, and what happens while Redis cannot be reached
(`shared.on_unavailable`).

- `closed` (the default): a request with any limit or budget is refused with a 503
  (`limits_unavailable`): nothing is admitted that could overspend. Requests without limits
  never reach the counters, so they are served as usual.
- `open`: requests are counted by this process alone, on counters seeded from the ledger like
  the shared ones, and their usage records are flagged (`limits_degraded`). A fleet may then
  overspend by what each replica admits on its own.

After a failure Redis is left alone for `PROBE_SECONDS`, so that an outage does not cost every
request a timeout; then one request tries it again, and the first answer ends the outage. What
could not be settled in Redis meanwhile — settlements that failed, and spend counted locally —
is kept (up to `MAX_OWED` settlements) and applied once Redis answers: idempotently, and not at
all to a budget seeded from the ledger after the request (the ledger then has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from redis.exceptions import RedisError

from entrepot.exceptions import LimitsUnavailableError
from entrepot.failure_log import FailureLog
from entrepot.limits.counters import Ask, MemoryCounters, Settlement, Verdict
from entrepot.limits.redis_counters import RedisCounters

log = logging.getLogger("entrepot.limits")

# What a failing Redis call raises: redis-py's own errors, and a socket's or a timeout's from
# below it (`TimeoutError` is an `OSError`).
FAILURES = (RedisError, OSError)
PROBE_SECONDS = 1.0
MAX_OWED = 100_000
UNAVAILABLE = (
    "the gateway cannot reach Redis, where the limits and budgets of this key are kept;"
    " requests of keys with limits are refused until it answers again"
)


class SharedCounters:
    def __init__(
        self,
        redis: RedisCounters,
        on_unavailable: Literal["closed", "open"] = "closed",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.on_unavailable = on_unavailable
        self._local = MemoryCounters() if on_unavailable == "open" else None
        self._clock = clock
        self._down = False
        self._probe_at = 0.0
        self._owed: deque[Settlement] = deque()
        self._replay: asyncio.Task[None] | None = None
        self._failures = FailureLog(log, "limits: Redis")

    @property
    def available(self) -> bool:
        """Redis answered the last time it was asked."""
        return not self._down

    @property
    def owed(self) -> int:
        """Settlements waiting for Redis."""
        return len(self._owed)

    async def admit(self, ask: Ask) -> Verdict:
        if self._may_try():
            try:
                verdict = await self.redis.admit(ask)
            except FAILURES as error:
                self._failed(error)
            else:
                self._answered()
                return verdict
        local = self._fallback()
        verdict = await local.admit(ask)
        verdict.degraded = True
        verdict.admitted_at = time.time_ns() // 1000  # Redis's clock is the wall clock too
        return verdict

    async def settle(self, settlement: Settlement) -> None:
        """Never raises: the answer has gone to the client, and what Redis cannot take now is
        kept for when it can."""
        if settlement.degraded:
            if self._local is not None:
                await self._local.settle(settlement)
            spent = tuple(b for b in settlement.budgets if b.actual)
            if spent:
                self._owe(settlement._replace(budgets=spent, token_windows=()))
            return
        if self._may_try():
            try:
                await self.redis.settle(settlement)
            except FAILURES as error:
                self._failed(error)
            else:
                self._answered()
                return
        self._owe(settlement._replace(token_windows=()))

    async def seed(self, name: str, spent: int, *, ttl_seconds: float | None = None) -> None:
        if self._may_try():
            try:
                await self.redis.seed(name, spent, ttl_seconds=ttl_seconds)
            except FAILURES as error:
                self._failed(error)
            else:
                self._answered()
                return
        await self._fallback().seed(name, spent, ttl_seconds=ttl_seconds)

    async def check(self) -> bool:
        """Whether Redis answers (for `/health`): asked now, unless it failed less than
        `PROBE_SECONDS` ago."""
        if not self._may_try():
            return False
        try:
            await self.redis.ping()
        except FAILURES as error:
            self._failed(error)
            return False
        self._answered()
        return True

    async def close(self) -> None:
        """Give a replay in progress a moment to finish; what is still owed is lost with the
        process (the ledger has it: `entrepot reconcile` finds the difference)."""
        if self._replay is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._replay), timeout=2)
            self._replay.cancel()
        if self._owed:
            log.warning("limits: %d settlements never reached Redis", len(self._owed))
        await self.redis.close()

    def _may_try(self) -> bool:
        if not self._down:
            return True
        now = self._clock()
        if now < self._probe_at:
            return False
        self._probe_at = now + PROBE_SECONDS  # one probe per interval, whoever makes it
        return True

    def _fallback(self) -> MemoryCounters:
        if self._local is None:
            raise LimitsUnavailableError(UNAVAILABLE)
        return self._local

    def _failed(self, error: BaseException) -> None:
        if not self._down:
            how = "refused" if self._local is None else "counted by this process alone, flagged"
            log.warning("limits: Redis unreachable; requests of keys with limits are %s", how)
        self._down = True
        self._probe_at = self._clock() + PROBE_SECONDS
        self._failures.failed(error)

    def _answered(self) -> None:
        if self._down:
            self._down = False
            self._failures.succeeded()
            if self._local is not None:
                # What it counted is owed to Redis now; kept, it would seed the next outage
                # with a spend that is stale by then.
                self._local = MemoryCounters()
        if self._owed and (self._replay is None or self._replay.done()):
            self._replay = asyncio.create_task(self._pay(), name="limits-replay")

    def _owe(self, settlement: Settlement) -> None:
        if len(self._owed) == MAX_OWED:
            self._owed.popleft()
            log.error(
                "limits: more than %d settlements wait for Redis; dropping the oldest", MAX_OWED
            )
        self._owed.append(settlement)

    async def _pay(self) -> None:
        """Apply what is owed to Redis, oldest first, until it is paid or Redis fails again."""
        while self._owed and not self._down:
            try:
                await self.redis.settle(self._owed[0])
            except FAILURES as error:
                self._failed(error)
                return
            self._owed.popleft()
