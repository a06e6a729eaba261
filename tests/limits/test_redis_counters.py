"""RedisCounters on a real Redis: the scripts' windows (the same answers as MemoryCounters at
the server's clock), reservations and settlement by request id, lapsed reservations, seeding,
spend counted elsewhere, and exactness under concurrency from two clients."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from entrepot.limits.counters import (
    Ask,
    BudgetAsk,
    BudgetSettlement,
    MemoryCounters,
    Settlement,
    Verdict,
    WindowAsk,
)
from entrepot.limits.redis_counters import MICROS, RedisCounters

T = TypeVar("T")
W = 60.0
HOLD = 60.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(redis_url: str, scenario: Callable[[RedisCounters], Awaitable[T]]) -> T:
    """Run `scenario` on counters of their own (a fresh key prefix) on the session's Redis."""

    async def main() -> T:
        client = Redis.from_url(redis_url)
        counters = RedisCounters(client, prefix=f"test:{uuid.uuid4().hex}:")
        try:
            return await scenario(counters)
        finally:
            await counters.close()
            await client.aclose()

    return asyncio.run(main())


def budget_ask(
    name: str, amount: int | None, limit: int, rid: str = "r", hold: float = HOLD
) -> Ask:
    return Ask(rid, (), (BudgetAsk(name, amount, limit),), hold)


def settlement(rid: str, name: str, reserved: int, actual: int, **fields: object) -> Settlement:
    values: dict[str, object] = {
        "request_id": rid,
        "budgets": (BudgetSettlement(name, reserved, actual),),
        "token_windows": (),
        "token_correction": 0,
        "window_seconds": W,
        "admitted_at": 0,
    }
    return Settlement(**{**values, **fields})  # type: ignore[arg-type]


def test_a_window_admits_up_to_its_limit_then_says_when_it_fits(redis_url: str) -> None:
    async def scenario(counters: RedisCounters) -> tuple[list[Verdict], int]:
        ask = Ask("r", (WindowAsk("rpm", 1, 3, W),), (), HOLD)
        verdicts = [await counters.admit(ask) for _ in range(4)]
        return verdicts, await counters.redis.pttl(f"{counters.prefix}w:rpm")

    verdicts, ttl = run(redis_url, scenario)
    assert W * 1000 < ttl <= 2 * W * 1000  # gone when this minute and the next are over
    assert [v.admitted for v in verdicts] == [True, True, True, False]
    assert [v.windows[0].used for v in verdicts] == [1, 2, 3, 3]
    assert verdicts[3].refused_window == 0
    # Admitted: empty once this minute and the next are over; refused: not before this one is.
    now = verdicts[0].admitted_at / MICROS
    assert W <= verdicts[0].windows[0].reset_seconds <= 2 * W
    assert 0 < verdicts[3].windows[0].reset_seconds <= 2 * W - now % W


@pytest.mark.parametrize("seed", range(3))
def test_windows_answer_as_memory_does_at_the_servers_clock(redis_url: str, seed: int) -> None:
    """Plant the same two windows in Redis and in memory, ask both at Redis's time: the same
    states, refusals and resets, for amounts that fit, just fit and do not."""
    rng = random.Random(seed)

    async def scenario(counters: RedisCounters) -> list[tuple[Verdict, Verdict]]:
        pairs = []
        for case in range(40):
            name = f"w{case}"
            previous, current = rng.randrange(0, 50), rng.randrange(0, 50)
            limit = rng.randrange(1, 120)
            amount = rng.choice([0, 1, rng.randrange(0, 130)])
            seconds = await counters.redis.time()
            index = int(seconds[0] // W)
            await counters.redis.hset(
                f"{counters.prefix}w:{name}",
                mapping={"i": index - 1, "c": previous, "p": 0},
            )
            # The previous window's count, then this window's: as if hit at two moments.
            first = Ask("r", (WindowAsk(name, current, 10**9, W),), (), HOLD)
            seeded = await counters.admit(first)
            ask = Ask("r", (WindowAsk(name, amount, limit, W),), (), HOLD)
            verdict = await counters.admit(ask)
            moments = {int(v.admitted_at / MICROS // W) for v in (seeded, verdict)}
            if moments != {index}:
                continue  # a minute turned in between: the plant no longer holds
            clock = Clock((index - 1) * W)
            memory = MemoryCounters(clock)
            memory.hit(name, previous, 10**9, W)
            clock.now = verdict.admitted_at / MICROS
            memory.hit(name, current, 10**9, W)
            pairs.append((verdict, await memory.admit(ask)))
        return pairs

    pairs = run(redis_url, scenario)
    assert len(pairs) >= 38
    for redis_verdict, memory_verdict in pairs:
        assert redis_verdict.refused_window == memory_verdict.refused_window
        assert redis_verdict.windows == memory_verdict.windows


def test_a_refused_request_counts_nothing_anywhere(redis_url: str) -> None:
    async def scenario(counters: RedisCounters) -> tuple[Verdict, Verdict, list[object]]:
        await counters.seed("key", 0)
        await counters.seed("team", 95)
        windows = (WindowAsk("key:rpm", 1, 5, W), WindowAsk("team:tpm", 40, 100, W))
        ask = Ask("r1", windows, (BudgetAsk("key", 10, 100), BudgetAsk("team", 10, 100)), HOLD)
        budget = await counters.admit(ask)
        rate = await counters.admit(ask._replace(windows=(*windows, WindowAsk("x", 7, 6, W))))
        after = [
            (await counters.admit(Ask("r2", (WindowAsk("key:rpm", 0, 5, W),), (), HOLD)))
            .windows[0]
            .used,
            await counters.budget("key"),
            await counters.budget("team"),
        ]
        return budget, rate, after

    budget, rate, after = run(redis_url, scenario)
    assert (budget.refused_budget, budget.spent, budget.reserved) == (1, 95, 0)
    assert [s.admitted for s in budget.windows] == [True, True]
    assert rate.refused_window == 2
    assert after == [0, (0, 0), (95, 0)]


def test_reserve_settle_and_settling_again_spends_once(redis_url: str) -> None:
    async def scenario(counters: RedisCounters) -> list[object]:
        seen: list[object] = []
        await counters.seed("b", 400)
        seen.append((await counters.admit(budget_ask("b", 500, 1000, "a"))).admitted)
        seen.append((await counters.admit(budget_ask("b", 100, 1000, "b"))).admitted)
        refused = await counters.admit(budget_ask("b", 1, 1000, "c"))
        seen.append((refused.refused_budget, refused.spent, refused.reserved))
        seen.append((await counters.admit(budget_ask("b", None, 1000, "d"))).refused_budget)
        for _ in range(2):
            await counters.settle(settlement("a", "b", 500, 320))
        seen.append(await counters.budget("b"))
        await counters.settle(settlement("never-admitted", "b", 50, 50))
        await counters.settle(settlement("b", "b", 100, 0))
        seen.append(await counters.budget("b"))
        seen.append((await counters.admit(budget_ask("b", None, 1000, "e"))).admitted)
        return seen

    assert run(redis_url, scenario) == [True, True, (0, 400, 600), 0, (720, 100), (720, 0), True]


def test_a_budget_counters_do_not_have_is_asked_for_and_seeded_once(redis_url: str) -> None:
    async def scenario(counters: RedisCounters) -> list[object]:
        ask = Ask("r", (WindowAsk("rpm", 1, 5, W),), (BudgetAsk("b", 10, 100),), HOLD)
        first = await counters.admit(ask)
        used = (await counters.admit(ask._replace(budgets=()))).windows[0].used
        await asyncio.gather(
            counters.seed("b", 30, ttl_seconds=3600), counters.seed("b", 50, ttl_seconds=3600)
        )
        ttl = await counters.redis.pttl(f"{counters.prefix}b:b")
        second = await counters.admit(ask._replace(request_id="r2"))
        return [first.unseeded, first.windows[0].admitted, used, ttl, second.admitted]

    unseeded, window_admitted, used, ttl, admitted = run(redis_url, scenario)
    assert unseeded == ("b",) and window_admitted
    assert used == 1  # the unseeded ask counted nothing; only the second ask did
    assert 3_500_000 < ttl <= 3_600_000
    assert admitted


def test_a_lapsed_reservation_comes_back_and_a_late_settlement_spends_once(
    redis_url: str,
) -> None:
    async def scenario(counters: RedisCounters) -> list[object]:
        await counters.seed("b", 0)
        dead = await counters.admit(budget_ask("b", 600, 1000, "dead", hold=0.05))
        late = await counters.admit(budget_ask("b", 400, 1000, "late", hold=0.05))
        seen: list[object] = [dead.admitted, late.admitted, await counters.budget("b")]
        deadline = time.monotonic() + 10
        while (await counters.budget("b")) != (0, 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            await counters.admit(budget_ask("b", None, 1000, "probe"))  # lapses what is due
        seen.append(await counters.budget("b"))
        for _ in range(2):
            await counters.settle(settlement("late", "b", 400, 300))
        seen.append(await counters.budget("b"))
        seen.append((await counters.admit(budget_ask("b", 700, 1000, "next"))).admitted)
        return seen

    assert run(redis_url, scenario) == [True, True, (0, 1000), (0, 0), (300, 0), True]


def test_spend_counted_elsewhere_is_added_once_unless_the_seed_has_it(redis_url: str) -> None:
    async def scenario(counters: RedisCounters) -> list[object]:
        await counters.seed("b", 1000)
        seeded = int(await counters.redis.hget(f"{counters.prefix}b:b", "seeded"))
        before, after = seeded - 1, seeded
        for _ in range(2):
            await counters.settle(
                settlement("elsewhere", "b", 0, 70, admitted_at=after, degraded=True)
            )
        await counters.settle(
            settlement("in-the-seed", "b", 0, 5, admitted_at=before, degraded=True)
        )
        return [await counters.budget("b")]

    assert run(redis_url, scenario) == [(1070, 0)]


def test_spend_counted_elsewhere_settles_a_reservation_redis_made_after_all(
    redis_url: str,
) -> None:
    """The replica's admission timed out, so it counted the request locally; Redis ran the
    admission anyway. The spend it later reports settles that reservation."""

    async def scenario(counters: RedisCounters) -> list[object]:
        await counters.seed("b", 0)
        await counters.admit(budget_ask("b", 500, 1000, "late"))
        for _ in range(2):
            await counters.settle(settlement("late", "b", 0, 80, admitted_at=0, degraded=True))
        return [await counters.budget("b")]

    assert run(redis_url, scenario) == [(80, 0)]


def test_a_token_estimate_is_corrected_at_settlement(redis_url: str) -> None:
    async def scenario(counters: RedisCounters) -> list[int]:
        ask = Ask("r", (WindowAsk("tpm", 100, 1000, W),), (), HOLD)
        await counters.admit(ask)
        correct = settlement("r", "none", 0, 0, token_windows=("tpm",), token_correction=-70)
        await counters.settle(correct._replace(budgets=()))
        used = await counters.admit(ask._replace(windows=(WindowAsk("tpm", 0, 1000, W),)))
        await counters.settle(correct._replace(budgets=(), token_correction=500))
        again = await counters.admit(ask._replace(windows=(WindowAsk("tpm", 0, 1000, W),)))
        return [used.windows[0].used, again.windows[0].used]

    assert run(redis_url, scenario) == [30, 530]


def test_set_spent_replaces_the_spend_and_keeps_reservations(redis_url: str) -> None:
    async def scenario(counters: RedisCounters) -> list[object]:
        await counters.seed("b", 100)
        await counters.admit(budget_ask("b", 50, 1000, "live"))
        replaced = await counters.set_spent("b", 250)
        missing = await counters.set_spent("absent", 5)
        await counters.settle(settlement("live", "b", 50, 40))
        return [replaced, missing, await counters.budget("b"), await counters.budget("absent")]

    assert run(redis_url, scenario) == [100, None, (290, 0), None]


def test_two_clients_admit_exactly_what_fits(redis_url: str) -> None:
    """Hundreds of concurrent reservations from two clients (each its own connections and
    event loop, in its own thread) against a budget that fits exactly 37 of them: exactly 37
    are admitted; then they all settle concurrently, and the spend is the sum of what they
    settled, to the nano."""
    prefix = f"test:{uuid.uuid4().hex}:"
    worst, fits, per_client = 1_000_003, 37, 300
    limit = worst * fits + worst - 1

    async def with_counters(work: Callable[[RedisCounters], Awaitable[T]]) -> T:
        # Requests wait for one of 32 connections, as a gateway's do under load.
        redis = Redis(
            connection_pool=BlockingConnectionPool.from_url(redis_url, max_connections=32)
        )
        counters = RedisCounters(redis, prefix=prefix)
        try:
            return await work(counters)
        finally:
            await counters.close()
            await redis.aclose()

    def in_two_threads(work: Callable[[int], Callable[[RedisCounters], Awaitable[T]]]) -> list[T]:
        results: list[T] = []
        threads = [
            threading.Thread(target=lambda n=n: results.append(asyncio.run(with_counters(work(n)))))
            for n in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 2
        return results

    def admit_all(number: int) -> Callable[[RedisCounters], Awaitable[list[str]]]:
        async def work(counters: RedisCounters) -> list[str]:
            async def request(rid: str) -> str | None:
                verdict = await counters.admit(budget_ask("b", worst, limit, rid))
                return rid if verdict.admitted else None

            rids = await asyncio.gather(*(request(f"c{number}-{i}") for i in range(per_client)))
            return [rid for rid in rids if rid is not None]

        return work

    asyncio.run(with_counters(lambda counters: counters.seed("b", 0)))
    admitted = [rid for rids in in_two_threads(admit_all) for rid in rids]
    assert len(admitted) == fits
    actual = {rid: random.Random(rid).randrange(0, worst + 1) for rid in admitted}

    def settle_half(number: int) -> Callable[[RedisCounters], Awaitable[None]]:
        async def work(counters: RedisCounters) -> None:
            mine = admitted[number::2]
            await asyncio.gather(
                *(counters.settle(settlement(rid, "b", worst, actual[rid])) for rid in mine)
            )

        return work

    in_two_threads(settle_half)
    budget = asyncio.run(with_counters(lambda counters: counters.budget("b")))
    assert budget == (sum(actual.values()), 0)


def test_through_redis_py_when_the_lean_connection_cannot_serve_the_url(redis_url: str) -> None:
    """A TLS URL is not spoken by the lean connection: the same scripts go through redis-py,
    which loads them again after a SCRIPT FLUSH too."""

    async def scenario(counters: RedisCounters) -> list[object]:
        counters._wire = None  # as for a TLS URL
        await counters.seed("b", 0)
        await counters.redis.script_flush()
        admitted = await counters.admit(budget_ask("b", 5, 10, "r1"))
        await counters.settle(settlement("r1", "b", 5, 3))
        return [admitted.admitted, await counters.budget("b")]

    assert run(redis_url, scenario) == [True, (3, 0)]
