"""MemoryCounters on an injected clock: sliding-window admission and reset, budgets, expiry."""

from __future__ import annotations

import asyncio

from entrepot.limits.counters import (
    Ask,
    BudgetAsk,
    BudgetSettlement,
    MemoryCounters,
    Settlement,
    Verdict,
    WindowAsk,
    WindowState,
)

W = 60.0


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_admits_up_to_the_limit_then_refuses_with_the_wait_until_it_fits() -> None:
    clock = Clock(10.0)
    counters = MemoryCounters(clock)

    async def scenario() -> list[WindowState]:
        return [counters.hit("r", 1, 3, W) for _ in range(4)]

    states = asyncio.run(scenario())
    assert [s.admitted for s in states] == [True, True, True, False]
    assert [s.used for s in states] == [1, 2, 3, 3]
    # Admitted: the window is empty once this minute and the next have passed.
    assert states[0].reset_seconds == 110.0
    # Refused: 3 of 3 used at 0-60s; at 80s the weighted previous count is ceil(3 * 2/3) = 2.
    assert states[3] == WindowState(False, 3, 3, 70.0)


def test_previous_window_decays_linearly() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock)

    async def scenario() -> list[bool]:
        for _ in range(4):
            counters.hit("r", 1, 4, W)
        admitted = []
        for now in (60.0, 75.0, 90.0):
            clock.now = now
            admitted.append((counters.hit("r", 1, 4, W)).admitted)
        return admitted

    # At 60s the whole previous minute counts (4); at 75s ceil(4 * 0.75) = 3 leaves room for one;
    # at 90s ceil(4 * 0.5) = 2 plus the one admitted at 75s leaves room for one more.
    assert asyncio.run(scenario()) == [False, True, True]


def test_window_resets_after_two_lengths() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock)

    async def scenario() -> WindowState:
        counters.hit("r", 5, 5, W)
        clock.now = 120.0
        return counters.hit("r", 5, 5, W)

    assert asyncio.run(scenario()) == WindowState(True, 5, 5, 120.0)


def test_zero_amount_only_checks() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock)

    async def scenario() -> tuple[WindowState, WindowState, WindowState]:
        first = counters.hit("t", 0, 10, W)
        counters.add("t", 12, W)
        over = counters.hit("t", 0, 10, W)
        counters.add("t", -2, W)
        return first, over, counters.hit("t", 0, 10, W)

    first, over, at_limit = asyncio.run(scenario())
    assert first == WindowState(True, 0, 10, 0.0)
    assert not over.admitted and over.used == 12
    assert at_limit.admitted and at_limit.used == 10


def test_an_amount_above_the_limit_waits_for_an_empty_window() -> None:
    clock = Clock(30.0)
    counters = MemoryCounters(clock)

    async def scenario() -> WindowState:
        counters.hit("t", 10, 100, W)
        return counters.hit("t", 500, 100, W)

    assert asyncio.run(scenario()) == WindowState(False, 10, 100, 90.0)


def test_a_refund_reaches_back_into_the_previous_window() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock)

    async def scenario() -> WindowState:
        counters.hit("t", 100, 100, W)
        clock.now = 60.0
        counters.add("t", 30, W)
        counters.add("t", -80, W)  # 30 from this minute, 50 from the last
        return counters.hit("t", 0, 100, W)

    assert asyncio.run(scenario()).used == 50


def hold(counters: MemoryCounters, name: str, amount: int | None, limit: int) -> Verdict:
    return asyncio.run(counters.admit(Ask("r", (), (BudgetAsk(name, amount, limit),), 60.0)))


def test_idle_windows_and_expired_budgets_are_swept() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock, sweep_seconds=10.0)
    sizes = []
    counters.hit("old", 1, 5, W)
    asyncio.run(counters.seed("day", 7, ttl_seconds=50.0))
    asyncio.run(counters.seed("held", 0, ttl_seconds=50.0))
    assert hold(counters, "held", 3, 10).admitted
    asyncio.run(counters.seed("total", 9))
    sizes.append(len(counters))
    clock.now = 119.0
    counters.spent("other")
    sizes.append(len(counters))  # the budget past its ttl is gone; "held" has a reservation
    clock.now = 130.0
    counters.release("held", 3, 2)
    sizes.append(len(counters))  # the window is gone; "held" stays until the next sweep
    clock.now = 140.0
    counters.spent("other")
    sizes.append(len(counters))
    assert sizes == [4, 3, 2, 1]
    assert counters.spent("total") == (9, 0)


def test_reserve_and_release_arithmetic() -> None:
    counters = MemoryCounters(Clock())
    seen: list[object] = [counters.spent("b"), hold(counters, "b", 5, 1000).unseeded]
    asyncio.run(counters.seed("b", 400))
    asyncio.run(counters.seed("b", 999))  # not new: left alone
    seen.append(hold(counters, "b", 500, 1000).admitted)
    seen.append(hold(counters, "b", 100, 1000).admitted)  # 400 + 500 + 100 = 1000: admitted
    refused = hold(counters, "b", 1, 1000)
    seen.append((refused.refused_budget, refused.spent, refused.reserved))
    seen.append(hold(counters, "b", None, 1000).refused_budget)  # no room left, even unpriced
    counters.release("b", 500, 320)
    seen.append(counters.spent("b"))
    seen.append(hold(counters, "b", 180, 1000).admitted)
    counters.release("b", 100, 0)
    counters.release("b", 180, 180)
    counters.release("gone", 10, 10)  # a budget that is not there is not created
    seen.append((counters.spent("b"), counters.spent("gone"), len(counters)))
    assert seen == [
        (0, 0),
        ("b",),
        True,
        True,
        (0, 400, 600),
        0,
        (720, 100),
        True,
        ((900, 0), (0, 0), 1),
    ]


def test_a_request_is_counted_everywhere_or_nowhere() -> None:
    counters = MemoryCounters(Clock(30.0))
    asyncio.run(counters.seed("key", 0))
    asyncio.run(counters.seed("team", 90))
    ask = Ask(
        "r",
        (WindowAsk("key:rpm", 1, 5, W), WindowAsk("team:tpm", 40, 100, W)),
        (BudgetAsk("key", 10, 100), BudgetAsk("team", 10, 100)),
        60.0,
    )
    first = asyncio.run(counters.admit(ask))
    second = asyncio.run(counters.admit(ask))  # the team's budget is full now
    third = asyncio.run(counters.admit(ask._replace(budgets=())))
    fourth = asyncio.run(counters.admit(ask._replace(budgets=())))  # 120 tokens > 100
    assert first.admitted and [s.used for s in first.windows] == [1, 40]
    assert (second.refused_budget, second.spent, second.reserved) == (1, 90, 10)
    assert third.admitted and [s.used for s in third.windows] == [2, 80]
    assert fourth.refused_window == 1 and [s.admitted for s in fourth.windows] == [True, False]
    assert counters.hit("key:rpm", 0, 5, W).used == 2
    assert counters.hit("team:tpm", 0, 100, W).used == 80
    assert (counters.spent("key"), counters.spent("team")) == ((0, 10), (90, 10))


def test_settling_releases_spends_and_corrects_tokens() -> None:
    counters = MemoryCounters(Clock(0.0))
    asyncio.run(counters.seed("b", 0))
    ask = Ask("r", (WindowAsk("t", 100, 1000, W),), (BudgetAsk("b", 50, 100),), 60.0)
    assert asyncio.run(counters.admit(ask)).admitted
    settlement = Settlement("r", (BudgetSettlement("b", 50, 20),), ("t",), -70, W, 0)
    asyncio.run(counters.settle(settlement))
    assert counters.spent("b") == (20, 0)
    assert counters.hit("t", 0, 1000, W).used == 30
