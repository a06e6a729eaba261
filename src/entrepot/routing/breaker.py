"""A circuit breaker per deployment: stop sending traffic to an upstream that keeps failing,
then let a single probe through after a cool-down to find out whether it has recovered."""

from __future__ import annotations

import time
from collections.abc import Callable

from entrepot.config import BreakerConfig


class CircuitBreaker:
    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = config.failure_threshold
        self._cooldown = config.cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self._cooldown:
            return "open"
        return "half-open"

    def admit(self) -> str | None:
        """None to go ahead, or why this deployment is skipped right now."""
        state = self.state
        if state == "closed":
            return None
        if state == "open":
            assert self._opened_at is not None
            left = self._cooldown - (self._clock() - self._opened_at)
            return f"circuit open after {self._failures} failures; retry in {left:.0f}s"
        if self._probing:
            return "circuit half-open; a probe is already in flight"
        self._probing = True
        return None

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._threshold:
            self._opened_at = self._clock()
        self._probing = False
