"""The counters behind every limit, behind an async interface so that one process can keep them in
memory while several replicas share them in Redis.

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
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class WindowState(NamedTuple):
    """`used` includes the amount only if it was admitted. `reset_seconds` is when the window is
    empty again if admitted (OpenAI's x-ratelimit-reset-*), and when the same amount would be
    admitted if refused (Retry-After) — or when empty, if the amount alone exceeds the limit."""

    admitted: bool
    used: int
    limit: int
    reset_seconds: float


class Counters(Protocol):
    async def hit(self, name: str, amount: int, limit: int, window_seconds: float) -> WindowState:
        """Record `amount` only if the window's total stays within `limit`; 0 only checks."""

    async def add(self, name: str, amount: int, window_seconds: float) -> None:
        """Record usage learnt after the fact, unconditionally; negative returns an excess."""

    async def reserve(self, name: str, amount: int, limit: int) -> bool:
        """Reserve `amount` only if spent + reserved + amount stays within `limit`."""

    async def settle(self, name: str, reserved: int, actual: int) -> None:
        """Release a reservation and spend what the request really cost."""

    async def spent(self, name: str) -> tuple[int, int]:
        """(spent, reserved)."""

    async def seed(self, name: str, spent: int, *, ttl_seconds: float | None = None) -> None:
        """Start a new budget at the ledger's spend; an existing one is left alone, so replicas
        seeding the same period concurrently agree. It may be forgotten after `ttl_seconds`."""


@dataclass(slots=True)
class _Window:
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
        self._windows: dict[str, _Window] = {}
        self._budgets: dict[str, _Budget] = {}

    def __len__(self) -> int:
        return len(self._windows) + len(self._budgets)

    async def hit(self, name: str, amount: int, limit: int, window_seconds: float) -> WindowState:
        now = self._now()
        window = self._window(name, window_seconds, now)
        used = window.used(now)
        if used + amount > limit:
            return WindowState(False, used, limit, window.until_fits(now, amount, limit))
        window.current += amount
        return WindowState(True, used + amount, limit, window.until_empty(now))

    async def add(self, name: str, amount: int, window_seconds: float) -> None:
        window = self._window(name, window_seconds, self._now())
        if amount >= 0:
            window.current += amount
            return
        # A refund may be for usage recorded in the previous window: take it back from there too.
        taken = min(window.current, -amount)
        window.current -= taken
        window.previous = max(0, window.previous - (-amount - taken))

    async def reserve(self, name: str, amount: int, limit: int) -> bool:
        self._now()
        budget = self._budgets.setdefault(name, _Budget())
        if budget.spent + budget.reserved + amount > limit:
            return False
        budget.reserved += amount
        return True

    async def settle(self, name: str, reserved: int, actual: int) -> None:
        self._now()
        budget = self._budgets.setdefault(name, _Budget())
        budget.reserved = max(0, budget.reserved - reserved)
        budget.spent += actual

    async def spent(self, name: str) -> tuple[int, int]:
        self._now()
        budget = self._budgets.get(name)
        return (budget.spent, budget.reserved) if budget else (0, 0)

    async def seed(self, name: str, spent: int, *, ttl_seconds: float | None = None) -> None:
        now = self._now()
        if name not in self._budgets:
            expires = now + ttl_seconds if ttl_seconds is not None else None
            self._budgets[name] = _Budget(spent=spent, expires=expires)

    def _window(self, name: str, seconds: float, now: float) -> _Window:
        window = self._windows.get(name)
        if window is None or window.seconds != seconds:
            window = self._windows[name] = _Window(seconds, math.floor(now / seconds))
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
