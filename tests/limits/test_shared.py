"""SharedCounters when Redis fails, on a Redis of the test's own: stopped (and restarted empty,
as without persistence) or paused (SIGSTOP: it keeps its data but answers nothing, so calls time
out). Fail closed refuses limited requests and serves the rest; fail open counts locally and
flags; either way Redis is used again once it answers, budgets it lost are seeded again from the
ledger, and what it missed meanwhile is settled there exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from redis.asyncio import Redis

from entrepot.config import Budget, Limits
from entrepot.exceptions import BudgetExceededError, LimitsUnavailableError
from entrepot.ledger.pricing import Cost
from entrepot.limits.limiter import Limiter, Subject
from entrepot.limits.redis_counters import RedisCounters
from entrepot.limits.shared import PROBE_SECONDS, SharedCounters
from tests.backing import Backing, start_redis
from tests.fleet.redis_control import restart

T = TypeVar("T")
NOW = dt.datetime(2026, 5, 17, 12, tzinfo=dt.UTC)
COUNTER = "key:1:budget:USD:2026-05"
CENT = 10_000_000
LIMITED = Subject("key:1", Limits(requests_per_minute=100, budget=Budget(amount=Decimal("1"))))
FREE = Subject("key:2", Limits())


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Backing]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.process.send_signal(signal.SIGCONT)  # in case a test paused it
    server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Ledger:
    def __init__(self, spent: int) -> None:
        self.spent = spent
        self.calls = 0

    async def __call__(self, subject: Subject, start: dt.datetime) -> int:
        self.calls += 1
        return self.spent


class Rig:
    """A limiter on shared counters on the test's Redis, with a clock for its probes."""

    def __init__(self, url: str, mode: Literal["closed", "open"], ledger: Ledger) -> None:
        self.client = Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
        self.redis = RedisCounters(self.client)
        self.clock = Clock()
        self.shared = SharedCounters(self.redis, mode, clock=self.clock)
        self.limiter = Limiter(self.shared, ledger, clock=lambda: NOW)

    def later(self) -> None:
        self.clock.now += PROBE_SECONDS

    async def spend(self, subject: Subject, worst: int, actual: int, rid: str) -> bool:
        admission = await self.limiter.admit(
            [subject], estimated_tokens=1, worst_costs=[Cost(worst, "USD")], request_id=rid
        )
        await self.limiter.settle(admission, actual_tokens=1, actual_cost=Cost(actual, "USD"))
        return admission.degraded


def run(
    url: str,
    mode: Literal["closed", "open"],
    ledger: Ledger,
    scenario: Callable[[Rig], Awaitable[T]],
) -> T:
    async def main() -> T:
        rig = Rig(url, mode, ledger)
        try:
            return await scenario(rig)
        finally:
            await rig.shared.close()
            await rig.client.aclose()

    return asyncio.run(main())


def test_closed_refuses_limited_keys_serves_others_and_recovers_on_a_fresh_redis(
    redis_server: Backing,
) -> None:
    ledger = Ledger(spent=30 * CENT)

    async def scenario(rig: Rig) -> list[object]:
        seen: list[object] = [await rig.spend(LIMITED, CENT, CENT // 2, "a")]
        redis_server.stop()
        with pytest.raises(LimitsUnavailableError) as refused:
            await rig.spend(LIMITED, CENT, CENT, "b")
        error = refused.value
        seen.append((error.status_code, error.code, error.headers))
        free = await rig.limiter.admit([FREE], estimated_tokens=1, worst_costs=[])
        seen += [free.degraded, await rig.shared.check(), rig.shared.available]
        restart(redis_server)
        seen.append(await rig.shared.check())  # not asked again within the probe interval
        rig.later()
        seen += [await rig.shared.check(), await rig.spend(LIMITED, CENT, CENT, "c")]
        seen += [await rig.redis.budget(COUNTER), ledger.calls]
        return seen

    assert run(redis_server.url, "closed", ledger, scenario) == [
        False,
        (503, "limits_unavailable", {"retry-after": "1"}),
        False,
        False,
        False,
        False,
        True,
        False,
        (31 * CENT, 0),  # seeded again from the ledger, then this request's cent
        2,
    ]


def test_open_counts_locally_and_settles_in_redis_once_it_answers(
    redis_server: Backing,
) -> None:
    ledger = Ledger(spent=10 * CENT)

    async def scenario(rig: Rig) -> list[object]:
        seen: list[object] = [await rig.spend(LIMITED, CENT, CENT, "a")]
        redis_server.process.send_signal(signal.SIGSTOP)
        seen.append(await rig.spend(LIMITED, 5 * CENT, 3 * CENT, "b"))  # degraded: local
        # Locally the budget is the ledger's 10 cents plus b's 3; 88 more do not fit.
        with pytest.raises(BudgetExceededError):
            await rig.spend(LIMITED, 88 * CENT, 0, "c")
        seen.append(rig.shared.owed)
        redis_server.process.send_signal(signal.SIGCONT)
        rig.later()
        seen.append(await rig.shared.check())
        for _ in range(200):
            if not rig.shared.owed:
                break
            await asyncio.sleep(0.01)
        seen += [rig.shared.owed, await rig.redis.budget(COUNTER)]
        seen.append(await rig.spend(LIMITED, CENT, CENT, "d"))
        return seen

    assert run(redis_server.url, "open", ledger, scenario) == [
        False,
        True,
        1,
        True,
        0,
        (14 * CENT, 0),  # 10 seeded + a's 1 + b's 3 (counted locally), once
        False,
    ]


def test_a_settlement_redis_missed_is_applied_when_it_answers(redis_server: Backing) -> None:
    async def scenario(rig: Rig) -> list[object]:
        admission = await rig.limiter.admit(
            [LIMITED], estimated_tokens=1, worst_costs=[Cost(5 * CENT, "USD")], request_id="a"
        )
        seen: list[object] = [await rig.redis.budget(COUNTER)]
        redis_server.process.send_signal(signal.SIGSTOP)
        await rig.limiter.settle(admission, actual_tokens=1, actual_cost=Cost(2 * CENT, "USD"))
        seen.append(rig.shared.owed)
        redis_server.process.send_signal(signal.SIGCONT)
        rig.later()
        await rig.shared.check()
        for _ in range(200):
            if not rig.shared.owed:
                break
            await asyncio.sleep(0.01)
        seen.append(await rig.redis.budget(COUNTER))
        return seen

    assert run(redis_server.url, "closed", Ledger(0), scenario) == [(0, 5 * CENT), 1, (2 * CENT, 0)]
