"""Choosing and calling a deployment: strategy order, circuit breakers, retries with backoff.

Retries happen only here, before anything has reached the client; once a stream has sent its
first chunk the API layer owns it and never retries silently. A deployment that answered with a
`Retry-After` is not tried again within the same request: the backoff here is milliseconds, the
wait it asked for is seconds. Every deployment considered leaves an `Attempt` (tried and how it
went, or skipped and why) for the usage record.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from entrepot.config import Config
from entrepot.exceptions import (
    GatewayError,
    OverloadedError,
    UpstreamError,
    UpstreamRejectedError,
)
from entrepot.routing.table import Deployment
from entrepot.types import Attempt

T = TypeVar("T")


def is_retryable(exc: GatewayError) -> bool:
    """Failures another try (here or elsewhere) may cure: unreachable, 5xx, timeout, 429, busy."""
    if isinstance(exc, UpstreamRejectedError):
        return exc.status_code == 429
    return isinstance(exc, UpstreamError | OverloadedError)


class Router:
    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random()

    def order(self, alias: str, eligible: list[Deployment]) -> list[Deployment]:
        strategy = self._config.route(alias).strategy
        if strategy == "weighted":
            # Weighted shuffle (Efraimidis–Spirakis): the first pick is proportional to weight,
            # and the rest remain a sensible fallback order.
            keyed = [(self._rng.random() ** (1 / d.config.weight), d) for d in eligible]
            return [d for _, d in sorted(keyed, key=lambda pair: -pair[0])]
        if strategy == "least_busy":
            return sorted(eligible, key=lambda d: d.in_flight)
        if strategy == "lowest_latency":
            return sorted(eligible, key=lambda d: d.latency_ewma or 0.0)
        return list(eligible)

    async def call(
        self,
        alias: str,
        eligible: list[Deployment],
        operation: Callable[[Deployment], Awaitable[T]],
        attempts: list[Attempt],
    ) -> tuple[T, Deployment]:
        """Run `operation` on deployments in strategy order until one succeeds.

        On success the deployment's `in_flight` stays raised: the caller calls `finished`
        when the response (or stream) is over."""
        route = self._config.route(alias)
        plan = self.order(alias, eligible)
        tried = 0
        last_error: GatewayError | None = None
        index = 0
        idle_cycle = 0
        told_to_wait: set[str] = set()
        while tried < route.max_attempts and idle_cycle < len(plan):
            deployment = plan[index % len(plan)]
            index += 1
            if deployment.name in told_to_wait:
                idle_cycle += 1
                continue
            skip = deployment.breaker.admit()
            if skip is not None:
                attempts.append(Attempt(deployment.name, "skipped", skip))
                idle_cycle += 1
                continue
            idle_cycle = 0
            if tried:
                await asyncio.sleep(route.backoff_seconds * 2 ** (tried - 1))
            tried += 1
            deployment.in_flight += 1
            started = time.perf_counter()
            try:
                result = await operation(deployment)
            except GatewayError as exc:
                deployment.in_flight -= 1
                attempts.append(Attempt(deployment.name, "failed", exc.code or exc.error_type))
                if not is_retryable(exc):
                    raise
                if isinstance(exc, UpstreamRejectedError) and exc.retry_after is not None:
                    told_to_wait.add(deployment.name)
                deployment.breaker.record_failure()
                last_error = exc
                continue
            except BaseException:
                deployment.in_flight -= 1
                raise
            deployment.breaker.record_success()
            deployment.observe_latency(time.perf_counter() - started)
            attempts.append(Attempt(deployment.name, "ok"))
            return result, deployment
        if last_error is not None:
            raise last_error
        raise OverloadedError(
            f"every deployment of {alias!r} is unavailable right now; retry shortly",
            code="no_deployment_available",
        )

    @staticmethod
    def finished(deployment: Deployment) -> None:
        deployment.in_flight -= 1
