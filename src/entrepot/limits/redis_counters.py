"""Counters kept in Redis, shared by every replica of a fleet (`shared.backend: redis`).

A request's admission is one call of one server-side script (see `redis_scripts.py`), covering
every rate window and every budget reservation of its key and its team, and its settlement is
one more: two round trips per request, whatever it is limited by. Reservations are held under the
request's id until its longest possible life has passed, so the budget a killed replica had
reserved comes back by itself; settling is idempotent by request id.

Admission, settlement and seeding, run on the request path, go through a lean connection of
their own (`store/redis_wire.py`: through redis-py they cost the gateway more CPU than Redis
spends running them); what `entrepot reconcile` reads and writes through the redis-py client.

Failures are raised as they come (`redis.exceptions.RedisError`): what to do when Redis cannot
be reached is the policy of `SharedCounters` (see `shared.py`), not of the counters.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from entrepot.limits.counters import Ask, Settlement, Verdict, Window, WindowState
from entrepot.limits.redis_scripts import ADMIT, MARKER_SECONDS, SEED, SET_SPENT, SETTLE
from entrepot.store.redis_wire import Address, Arg, RedisWire, Script

PREFIX = "entrepot:limits:"
MICROS = 1_000_000
_WINDOW_REFUSED, _UNSEEDED, _BUDGET_REFUSED = 0, 1, 2


class RedisCounters:
    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix
        address = Address.of(redis)
        self._wire = RedisWire(address) if address is not None else None
        self._admit = Script(ADMIT)
        self._settle = Script(SETTLE)
        self._seed = Script(SEED)
        self._set_spent = redis.register_script(SET_SPENT)

    async def admit(self, ask: Ask) -> Verdict:
        prefix = self.prefix
        keys = [f"{prefix}w:{window.name}" for window in ask.windows]
        args: list[Arg] = [
            ask.request_id,
            int(ask.hold_seconds * MICROS),
            len(ask.windows),
            len(ask.budgets),
            MARKER_SECONDS * MICROS,
        ]
        for window in ask.windows:
            args += (window.amount, window.limit, int(window.window_seconds * MICROS))
        for budget in ask.budgets:
            keys += (f"{prefix}b:{budget.name}", f"{prefix}x:{budget.name}")
            args += (-1 if budget.amount is None else budget.amount, budget.limit)
        reply = await self._run(self._admit, keys, args)
        return _verdict(ask, reply)

    async def settle(self, settlement: Settlement) -> None:
        prefix = self.prefix
        correction = settlement.token_correction
        windows = settlement.token_windows if correction else ()
        keys = [f"{prefix}w:{name}" for name in windows]
        args: list[Arg] = [
            settlement.request_id,
            len(windows),
            len(settlement.budgets),
            correction,
            int(settlement.window_seconds * MICROS),
            MARKER_SECONDS * MICROS,
        ]
        here = 0 if settlement.degraded else 1
        for name, _reserved, actual in settlement.budgets:
            keys += (f"{prefix}b:{name}", f"{prefix}x:{name}")
            args += (actual, here, settlement.admitted_at)
        if keys:
            await self._run(self._settle, keys, args)

    async def seed(self, name: str, spent: int, *, ttl_seconds: float | None = None) -> None:
        ttl = max(1, int(ttl_seconds * 1000)) if ttl_seconds is not None else 0
        keys = [f"{self.prefix}b:{name}", f"{self.prefix}x:{name}"]
        await self._run(self._seed, keys, [spent, ttl])

    async def budget(self, name: str) -> tuple[int, int] | None:
        """(spent, reserved), or None if the budget is not in Redis (it is seeded from the
        ledger on its next request)."""
        spent, reserved = await self.redis.hmget(f"{self.prefix}b:{name}", ["spent", "reserved"])
        if spent is None:
            return None
        return int(spent), int(reserved or 0)

    async def set_spent(self, name: str, spent: int) -> int | None:
        """Make what budget `name` has spent `spent`, leaving its reservations alone; returns
        what it replaced, or None if the budget is not in Redis (nothing is created)."""
        before = await self._set_spent(keys=[f"{self.prefix}b:{name}"], args=[spent])
        return None if before is None else int(before)

    async def ping(self) -> None:
        """Through the connection admissions use, so that it answers for them."""
        if self._wire is not None:
            await self._wire.call(b"PING")
        else:
            await self.redis.ping()

    async def close(self) -> None:
        """Close the connection admissions and settlements use (the client given is its
        owner's to close)."""
        if self._wire is not None:
            await self._wire.close()

    async def _run(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        if self._wire is not None:
            return await self._wire.run(script, keys, args)
        # A connection the lean one does not speak (TLS): through redis-py.
        try:
            return await self.redis.evalsha(script.sha.decode(), len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(script.source.decode(), len(keys), *keys, *args)


def _verdict(ask: Ask, reply: list[Any]) -> Verdict:
    outcome, now_micros, refused_window, refused_budget, spent, reserved, states, unseeded = reply
    now = now_micros / MICROS
    verdict = Verdict(admitted_at=int(now_micros))
    if outcome == _UNSEEDED:
        verdict.unseeded = tuple(ask.budgets[int(b) - 1].name for b in unseeded)
    elif outcome == _BUDGET_REFUSED:
        verdict.refused_budget = int(refused_budget) - 1
        verdict.spent, verdict.reserved = int(spent), int(reserved)
    elif outcome == _WINDOW_REFUSED:
        verdict.refused_window = int(refused_window) - 1
    refused = verdict.refused_window
    for position, (used, index, current, previous) in enumerate(states):
        asked = ask.windows[position]
        window = Window(asked.window_seconds, int(index), int(current), int(previous))
        if position == refused:
            reset = window.until_fits(now, asked.amount, asked.limit)
            verdict.windows.append(WindowState(False, int(used), asked.limit, reset))
        else:
            reset = window.until_empty(now)
            verdict.windows.append(WindowState(True, int(used), asked.limit, reset))
    return verdict
