"""Choosing and calling a deployment: strategy order, circuit breakers, retries with backoff.

Retries happen only here, before anything has reached the client; once a stream has sent its
first chunk the API layer owns it and never retries silently. Each deployment is called at most
once per request: a generation that failed or timed out may have run to its end upstream, so
sending it to the same deployment again would pay for it twice (and neither would be billed);
the retry goes to the next deployment, as does one after a `Retry-After`. So `max_attempts`
bounds the upstream calls a request makes, and every one of them leaves an `Attempt` in the
usage record (tried and how it went, or skipped and why). An operation raising `ModelRefusedError`
(a route's `on_refusal: fallback`) moves on like a retryable failure, but leaves the
deployment's circuit as it was: its model declined, the deployment works.
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
    ModelRefusedError,
    OverloadedError,
    UpstreamError,
    UpstreamIncapableError,
    UpstreamRejectedError,
)
from entrepot.routing.breaker import Outcome, Pass
from entrepot.routing.table import Deployment
from entrepot.types import Attempt

T = TypeVar("T")


def is_retryable(exc: GatewayError) -> bool:
    """Failures another try elsewhere may cure, and which count against the deployment's
    circuit: unreachable, 5xx, timeout (also an upstream 408), 429, busy. Any other upstream
    4xx is the request's own fault and fails it at once."""
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
        *,
        streaming: bool = False,
    ) -> tuple[T, Deployment]:
        """Run `operation` on deployments in strategy order, each at most once, until one
        succeeds or `max_attempts` calls have been made. For a stream, `operation` succeeding
        means only that it started: the stream's end tells the breaker how it went.

        On success the deployment's `in_flight` stays raised: the caller calls `finished`
        when the response (or stream) is over."""
        route = self._config.route(alias)
        tried = 0
        last_error: GatewayError | None = None
        for deployment in self.order(alias, eligible):
            if tried == route.max_attempts:
                break
            admitted = deployment.breaker.admit()
            if admitted is Pass.PROBE:
                admitted = await deployment.breaker.claim_probe()
            if isinstance(admitted, str):
                attempts.append(Attempt(deployment.name, "skipped", admitted))
                continue
            outcome = Outcome.NEUTRAL  # unless told otherwise below: cancelled, or unexpected
            deployment.in_flight += 1
            try:
                if tried:
                    await asyncio.sleep(route.backoff_seconds * 2 ** (tried - 1))
                tried += 1
                started = time.perf_counter()
                result = await operation(deployment)
                outcome = Outcome.STARTED if streaming else Outcome.SUCCESS
                deployment.observe_latency(time.perf_counter() - started)
                attempts.append(Attempt(deployment.name, "ok"))
                return result, deployment
            except ModelRefusedError as exc:  # the deployment works; its model declined
                attempts.append(Attempt(deployment.name, "refused", exc.reason))
                last_error = exc
            except GatewayError as exc:
                attempts.append(Attempt(deployment.name, "failed", exc.code or exc.error_type))
                if not is_retryable(exc):
                    raise
                if not isinstance(exc, UpstreamIncapableError):
                    outcome = Outcome.FAILURE
                last_error = exc
            finally:
                deployment.breaker.resolve(admitted, outcome)
                if outcome is not Outcome.SUCCESS and outcome is not Outcome.STARTED:
                    deployment.in_flight -= 1
        if last_error is not None:
            raise last_error
        raise self.unavailable(alias)

    def preview(
        self, alias: str, eligible: list[Deployment]
    ) -> list[tuple[Deployment, str | None]]:
        """What `call` would do now, without doing it: each deployment in the order it would be
        considered, with why it would be skipped (None: it would be tried if those before it
        failed). Admits nothing, so explaining a route never takes a probe's place."""
        limit = self._config.route(alias).max_attempts
        plan: list[tuple[Deployment, str | None]] = []
        tried = 0
        for deployment in self.order(alias, eligible):
            refused = deployment.breaker.refusal()
            if refused is None and tried == limit:
                refused = f"never reached: max_attempts is {limit}"
            elif refused is None:
                tried += 1
            plan.append((deployment, refused))
        return plan

    @staticmethod
    def unavailable(alias: str) -> OverloadedError:
        """The answer when every deployment was skipped."""
        return OverloadedError(
            f"every deployment of {alias!r} is unavailable right now; retry shortly",
            code="no_deployment_available",
        )

    @staticmethod
    def finished(deployment: Deployment) -> None:
        deployment.in_flight -= 1
