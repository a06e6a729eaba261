"""The counters behind every limit, behind an async interface so that one process can keep them in
memory (`MemoryCounters`) while several replicas share them in Redis (`redis_counters.py`).

A request is one question (`Ask`): every rate window and every budget of its key and team,
answered all or nothing in one step, which in Redis is one round trip; its end is one more
(`Settlement`).

Rates use a sliding window approximated from two fixed windows, as Cloudflare does: the count of
the previous window, weighted by how much of it still overlaps the sliding window, plus the count
of the current one. It needs two integers per name, no log of timestamps, and its error is small
when traffic is steady; it rounds up, so it errs on the side of refusing. Unlike a token bucket it
needs no refill rate, so usage can be recorded (or returned) without knowing the limit.

Budgets are two integers: what was spent and what is reserved by requests still running. A request
reserves its worst-case cost up front and settles at the real one, so no interleaving of requests
can spend past the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class WindowState(NamedTuple):
    """`used` includes the amount only if it was admitted. `reset_seconds` is when the window is
    empty again if admitted (OpenAI's x-ratelimit-reset-*), and when the same amount would be
    admitted if refused (Retry-After) — or when empty, if the amount alone exceeds the limit."""

    admitted: bool
    used: int
    limit: int
    reset_seconds: float


class WindowAsk(NamedTuple):
    """Count `amount` on the rate window `name` if it stays within `limit`."""

    name: str
    amount: int
    limit: int
    window_seconds: float


class BudgetAsk(NamedTuple):
    """Reserve `amount` on the budget `name` if spent + reserved + amount stays within `limit`;
    None (an unpriced request) only checks that the budget has room left."""

    name: str
    amount: int | None
    limit: int


class Ask(NamedTuple):
    """Everything one request asks of the counters, decided at once: all or nothing.
    `hold_seconds` is the request's longest possible life, after which a reservation nobody
    settled (its replica died) lapses and the budget gets it back."""

    request_id: str
    windows: tuple[WindowAsk, ...]
    budgets: tuple[BudgetAsk, ...]
    hold_seconds: float


@dataclass(slots=True)
class Verdict:
    """The answer to an `Ask`. `unseeded` names budgets that do not exist yet: nothing was
    counted, and the caller seeds them (from the ledger) and asks again. Otherwise `windows`
    holds each window's state up to the first refused (`refused_window`, its index), and a
    refused budget (`refused_budget`) comes with its `spent` and `reserved`. `admitted_at` is
    the counters' clock in microseconds; `degraded` says the answer came from counters local to
    this process because the shared ones could not be reached."""

    windows: list[WindowState] = field(default_factory=list)
    refused_window: int | None = None
    refused_budget: int | None = None
    spent: int = 0
    reserved: int = 0
    unseeded: tuple[str, ...] = ()
    admitted_at: int = 0
    degraded: bool = False

    @property
    def admitted(self) -> bool:
        return self.refused_window is None and self.refused_budget is None and not self.unseeded


class BudgetSettlement(NamedTuple):
    """What a request `reserved` on budget `name`, and what it really cost (`actual`)."""

    name: str
    reserved: int
    actual: int


class Settlement(NamedTuple):
    """The end of an admitted request: its budgets settle, and its token windows take the
    difference between the real token count and the estimate (`token_correction`).
    `admitted_at` and `degraded` are the verdict's."""

    request_id: str
    budgets: tuple[BudgetSettlement, ...]
    token_windows: tuple[str, ...]
    token_correction: int
    window_seconds: float
    admitted_at: int
    degraded: bool = False


class Counters(Protocol):
    async def admit(self, ask: Ask) -> Verdict:
        """Count the request on every window and reserve on every budget, or nothing at all."""

    async def settle(self, settlement: Settlement) -> None:
        """Release the request's reservations, spend its real cost and correct its token
        count. Settling a request twice spends once."""

    async def seed(self, name: str, spent: int, *, ttl_seconds: float | None = None) -> None:
        """Start a new budget at the ledger's spend; an existing one is left alone, so replicas
        seeding the same period concurrently agree. It may be forgotten after `ttl_seconds`."""


@dataclass(slots=True)
class Window:
    """One name's two fixed windows: the current one (`index`, numbered from the epoch) and the
    one before it."""

    seconds: float
    index: int
    current: int = 0
    previous: int = 0

    def roll(self, now: float) -> None:
        index = math.floor(now / self.seconds)
        if index != self.index:
            self.previous = self.current if index == self.index + 1 else 0
            self.current = 0
            self.index = index

    def overlap(self, now: float) -> float:
        """The share of the previous window still inside the sliding window ending now."""
        return 1 - (now - self.index * self.seconds) / self.seconds

    def used(self, now: float) -> int:
        # Rounded first so float noise (3.0000000001) does not become a whole extra request.
        return self.current + math.ceil(round(self.previous * self.overlap(now), 9))

    def until_empty(self, now: float) -> float:
        if self.current:
            return (self.index + 2) * self.seconds - now
        if self.previous:
            return (self.index + 1) * self.seconds - now
        return 0.0

    def until_fits(self, now: float, amount: int, limit: int) -> float:
        if amount > limit:
            return self.until_empty(now)
        room = limit - amount - self.current
        # Integer numerators first, so whole-second answers come out whole.
        if room >= 0:
            fits_at = ((self.index + 1) * self.previous - room) * self.seconds / self.previous
        else:
            later = (self.index + 2) * self.current - (limit - amount)
            fits_at = later * self.seconds / self.current
        return max(0.0, fits_at - now)


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    reserved: int = 0
    expires: float | None = None


class MemoryCounters:
    """Counters for a single process. Each method runs to completion without awaiting, so on one
    event loop every check-and-record is atomic. Windows idle for two lengths and budgets past
    their time to live (once nothing is reserved) are swept every `sweep_seconds`, so memory
    follows the active names rather than every name ever seen."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sweep_seconds: float = 60.0
    ) -> None:
        self._clock = clock
        self._sweep_seconds = sweep_seconds
        self._next_sweep = clock() + sweep_seconds
        self._windows: dict[str, Window] = {}
        self._budgets: dict[str, _Budget] = {}

    def __len__(self) -> int:
        return len(self._windows) + len(self._budgets)

    async def admit(self, ask: Ask) -> Verdict:
        """Runs without awaiting: on one event loop, the whole request is decided atomically.
        Windows come first, then budgets; a refusal takes back what was counted before it."""
        now = self._now()
        states: list[WindowState] = []
        for name, amount, limit, seconds in ask.windows:
            window = self._window(name, seconds, now)
            used = window.used(now)
            if used + amount > limit:
                wait = window.until_fits(now, amount, limit)
                self._take_back(ask, len(states), 0)
                states.append(WindowState(False, used, limit, wait))
                return Verdict(states, refused_window=len(states) - 1)
            window.current += amount
            states.append(WindowState(True, used + amount, limit, window.until_empty(now)))
        budgets = self._budgets
        for index, (name, worst, limit) in enumerate(ask.budgets):
            budget = budgets.get(name)
            if budget is None:
                self._take_back(ask, len(states), index)
                unseeded = (b.name for b in ask.budgets if b.name not in budgets)
                return Verdict(states, unseeded=tuple(unseeded))
            committed = budget.spent + budget.reserved
            if committed + (worst or 0) > limit or (worst is None and committed >= limit):
                self._take_back(ask, len(states), index)
                return Verdict(
                    states, refused_budget=index, spent=budget.spent, reserved=budget.reserved
                )
            if worst:
                budget.reserved += worst
        return Verdict(states)

    def _take_back(self, ask: Ask, windows: int, budgets: int) -> None:
        """Undo what `admit` counted on the first `windows` windows and `budgets` budgets."""
        for window in ask.windows[:windows]:
            self._windows[window.name].current -= window.amount
        for budget in ask.budgets[:budgets]:
            if budget.amount:
                self._budgets[budget.name].reserved -= budget.amount

    async def settle(self, settlement: Settlement) -> None:
        """Once per request: the limiter makes sure of it, as one process's memory dies with
        it, and so no reservation here outlives its request."""
        self._now()
        budgets = self._budgets
        for name, reserved, actual in settlement.budgets:
            budget = budgets.get(name)
            if budget is not None:  # see `release`
                budget.reserved = max(0, budget.reserved - reserved)
                budget.spent += actual
        if settlement.token_correction:
            for name in settlement.token_windows:
                self.add(name, settlement.token_correction, settlement.window_seconds)

    async def seed(self, name: str, spent: int, *, ttl_seconds: float | None = None) -> None:
        now = self._now()
        if name not in self._budgets:
            expires = now + ttl_seconds if ttl_seconds is not None else None
            self._budgets[name] = _Budget(spent=spent, expires=expires)

    def hit(self, name: str, amount: int, limit: int, window_seconds: float) -> WindowState:
        """Count `amount` only if the window's total stays within `limit`; 0 only checks."""
        now = self._now()
        window = self._window(name, window_seconds, now)
        used = window.used(now)
        if used + amount > limit:
            return WindowState(False, used, limit, window.until_fits(now, amount, limit))
        window.current += amount
        return WindowState(True, used + amount, limit, window.until_empty(now))

    def add(self, name: str, amount: int, window_seconds: float) -> None:
        """Count usage learnt after the fact, unconditionally; negative returns an excess."""
        window = self._window(name, window_seconds, self._now())
        if amount >= 0:
            window.current += amount
            return
        # A refund may be for usage recorded in the previous window: take it back from there too.
        taken = min(window.current, -amount)
        window.current -= taken
        window.previous = max(0, window.previous - (-amount - taken))

    def release(self, name: str, reserved: int, actual: int) -> None:
        """Release a reservation and spend what the request really cost. A budget that is gone
        (swept, or the counters replaced after an outage) is left alone: the ledger has the
        cost, and the next request seeds the budget from it."""
        self._now()
        budget = self._budgets.get(name)
        if budget is not None:
            budget.reserved = max(0, budget.reserved - reserved)
            budget.spent += actual

    def spent(self, name: str) -> tuple[int, int]:
        """(spent, reserved)."""
        self._now()
        budget = self._budgets.get(name)
        return (budget.spent, budget.reserved) if budget else (0, 0)

    def _window(self, name: str, seconds: float, now: float) -> Window:
        window = self._windows.get(name)
        if window is None or window.seconds != seconds:
            window = self._windows[name] = Window(seconds, math.floor(now / seconds))
        window.roll(now)
        return window

    def _now(self) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_seconds
            self._windows = {
                name: w for name, w in self._windows.items() if now < (w.index + 2) * w.seconds
            }
            self._budgets = {
                name: b
                for name, b in self._budgets.items()
                if b.reserved or b.expires is None or now < b.expires
            }
        return now
