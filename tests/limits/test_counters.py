"""MemoryCounters on an injected clock: sliding-window admission and reset, budgets, expiry."""

from __future__ import annotations

import asyncio

from entrepot.limits.counters import MemoryCounters, WindowState

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
        return [await counters.hit("r", 1, 3, W) for _ in range(4)]

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
            await counters.hit("r", 1, 4, W)
        admitted = []
        for now in (60.0, 75.0, 90.0):
            clock.now = now
            admitted.append((await counters.hit("r", 1, 4, W)).admitted)
        return admitted

    # At 60s the whole previous minute counts (4); at 75s ceil(4 * 0.75) = 3 leaves room for one;
    # at 90s ceil(4 * 0.5) = 2 plus the one admitted at 75s leaves room for one more.
    assert asyncio.run(scenario()) == [False, True, True]


def test_window_resets_after_two_lengths() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock)

    async def scenario() -> WindowState:
        await counters.hit("r", 5, 5, W)
        clock.now = 120.0
        return await counters.hit("r", 5, 5, W)

    assert asyncio.run(scenario()) == WindowState(True, 5, 5, 120.0)


def test_zero_amount_only_checks() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock)

    async def scenario() -> tuple[WindowState, WindowState, WindowState]:
        first = await counters.hit("t", 0, 10, W)
        await counters.add("t", 12, W)
        over = await counters.hit("t", 0, 10, W)
        await counters.add("t", -2, W)
        return first, over, await counters.hit("t", 0, 10, W)

    first, over, at_limit = asyncio.run(scenario())
    assert first == WindowState(True, 0, 10, 0.0)
    assert not over.admitted and over.used == 12
    assert at_limit.admitted and at_limit.used == 10


def test_an_amount_above_the_limit_waits_for_an_empty_window() -> None:
    clock = Clock(30.0)
    counters = MemoryCounters(clock)

    async def scenario() -> WindowState:
        await counters.hit("t", 10, 100, W)
        return await counters.hit("t", 500, 100, W)

    assert asyncio.run(scenario()) == WindowState(False, 10, 100, 90.0)


def test_a_refund_reaches_back_into_the_previous_window() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock)

    async def scenario() -> WindowState:
        await counters.hit("t", 100, 100, W)
        clock.now = 60.0
        await counters.add("t", 30, W)
        await counters.add("t", -80, W)  # 30 from this minute, 50 from the last
        return await counters.hit("t", 0, 100, W)

    assert asyncio.run(scenario()).used == 50


def test_idle_windows_and_expired_budgets_are_swept() -> None:
    clock = Clock(0.0)
    counters = MemoryCounters(clock, sweep_seconds=10.0)

    async def scenario() -> list[int]:
        sizes = []
        await counters.hit("old", 1, 5, W)
        await counters.seed("day", 7, ttl_seconds=50.0)
        await counters.seed("held", 0, ttl_seconds=50.0)
        await counters.reserve("held", 3, 10)
        await counters.seed("total", 9)
        sizes.append(len(counters))
        clock.now = 119.0
        await counters.spent("other")
        sizes.append(len(counters))  # the budget past its ttl is gone; "held" has a reservation
        clock.now = 130.0
        await counters.settle("held", 3, 2)
        sizes.append(len(counters))  # the window is gone; "held" stays until the next sweep
        clock.now = 140.0
        await counters.spent("other")
        sizes.append(len(counters))
        return sizes

    assert asyncio.run(scenario()) == [4, 3, 2, 1]
    assert asyncio.run(counters.spent("total")) == (9, 0)


def test_reserve_and_settle_arithmetic() -> None:
    counters = MemoryCounters(Clock())

    async def scenario() -> list[object]:
        seen: list[object] = [await counters.spent("b")]
        await counters.seed("b", 400)
        await counters.seed("b", 999)  # not new: left alone
        seen.append(await counters.reserve("b", 500, 1000))
        seen.append(await counters.reserve("b", 100, 1000))  # 400 + 500 + 100 = 1000: admitted
        seen.append(await counters.reserve("b", 1, 1000))
        seen.append(await counters.spent("b"))
        await counters.settle("b", 500, 320)
        seen.append(await counters.spent("b"))
        seen.append(await counters.reserve("b", 180, 1000))
        await counters.settle("b", 100, 0)
        await counters.settle("b", 180, 180)
        seen.append(await counters.spent("b"))
        return seen

    assert asyncio.run(scenario()) == [
        (0, 0),
        True,
        True,
        False,
        (400, 600),
        (720, 100),
        True,
        (900, 0),
    ]
