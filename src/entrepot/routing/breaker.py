"""A circuit breaker per deployment: stop sending traffic to an upstream that keeps failing,
then let a single probe through after a cool-down to find out whether it has recovered.

`admit` hands out a pass that must be given back to `resolve` exactly once, however the call
ends (success, failure, an error of the request's own making, an unexpected exception, or
cancellation when the client goes away): the router resolves it in a `finally`. A probe whose
pass were never resolved would keep its deployment at 503 until a restart.

What counts against a deployment is decided by the caller (`routing.router.outcome_of`): only
failures another deployment might not have — unreachable, 5xx, timeouts, 408, 429, a busy local
queue. An error caused by the request (any other 4xx) says nothing about the deployment's health,
so it neither counts as a failure nor, for a probe, as proof of recovery: the probe is released
and the next request probes again. A 400 comes back before any generation starts, so closing the
circuit on it would let all traffic back onto an upstream that may still be overloaded.

A stream's verdict comes at its end, not when it starts: an upstream that opens every stream
and breaks it mid-answer is failing. So a started stream (`Outcome.STARTED`) releases the probe
and closes the circuit (the upstream answered) but leaves the count of consecutive failures as
it was; the stream's end then counts it once, as a success (`record_success`) or a failure
(`record_failure`). Were the start counted as a success, the count would be reset before every
mid-stream failure and never reach the threshold.

A probe `admit` hands out is confirmed by `claim_probe` before it is used: a breaker shared by
several replicas makes sure there that it is the fleet's only probe.

`refusal` answers "would a request be admitted now, and if not why" without changing anything,
so `entrepot route --explain` reports exactly what `admit` would decide.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from entrepot.config import BreakerConfig


class Pass(enum.Enum):
    """What `admit` let through; given back to `resolve` once. Two shared members rather than
    an object per request: there is at most one probe in flight per deployment."""

    REGULAR = "regular"
    PROBE = "probe"


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # the request's own error, cancelled, or unexpected: no evidence
    STARTED = "started"  # a stream began; its end is counted by record_success/record_failure


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

    def refusal(self) -> str | None:
        """Why a request would be skipped right now, or None if it would go ahead. Changes
        nothing."""
        opened_at = self._opened_at
        if opened_at is None:
            return None
        left = self._cooldown - (self._clock() - opened_at)
        if left > 0:
            return f"circuit open after {self._failures} failures; retry in {left:.0f}s"
        if self._probing:
            return "circuit half-open; a probe is already in flight"
        return None

    def admit(self) -> Pass | str:
        """A pass to go ahead (to be resolved), or why this deployment is skipped right now."""
        if self._opened_at is None:
            return Pass.REGULAR
        refused = self.refusal()
        if refused is not None:
            return refused
        self._probing = True
        return Pass.PROBE

    async def claim_probe(self) -> Pass | str:
        """Confirm a probe `admit` handed out as the only one in flight, or give it back and say
        why not. In one process `admit` has made sure of it; a breaker shared by a fleet
        (`routing.shared_breaker`) asks the other replicas here, off the path of closed
        circuits, so `admit` stays synchronous for every request that is not a probe."""
        return Pass.PROBE

    def resolve(self, admitted: Pass, outcome: Outcome) -> None:
        """The end of an admitted call. Every pass is resolved once; a probe's always releases
        the probe slot, whatever the outcome."""
        if admitted is Pass.PROBE:
            self._probing = False
        if outcome is Outcome.SUCCESS:
            self._failures = 0
            self._opened_at = None
        elif outcome is Outcome.STARTED:
            self._opened_at = None
        elif outcome is Outcome.FAILURE:
            self._failures += 1
            if admitted is Pass.PROBE or self._failures >= self._threshold:
                self._opened_at = self._clock()

    def record_success(self) -> None:
        """A started stream that reached its end."""
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        """A started stream that broke after its first chunk. It counts like any failure but
        leaves a probe in flight alone."""
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()
