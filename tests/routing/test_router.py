"""The router and circuit breaker in isolation: strategy orders, retry rules, breaker states."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from entrepot.config import BreakerConfig, Config, ModelConfig
from entrepot.exceptions import (
    InvalidRequestError,
    OverloadedError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
)
from entrepot.routing.breaker import CircuitBreaker
from entrepot.routing.router import Router, is_retryable
from entrepot.routing.table import RoutingTable
from entrepot.types import Attempt


def _config(strategy: str = "fallback", **route: Any) -> Config:
    models = [
        ModelConfig(
            alias="m",
            name=name,
            provider="openai_compatible",
            target="t",
            base_url="http://127.0.0.1:9/v1",
            weight=weight,
        )
        for name, weight in (("a", 1.0), ("b", 3.0), ("c", 6.0))
    ]
    return Config(
        models=models,
        routes={"m": {"strategy": strategy, "backoff_seconds": 0, **route}},  # type: ignore[dict-item]
        breaker=BreakerConfig(failure_threshold=2, cooldown_seconds=10),
    )


def test_fallback_keeps_config_order() -> None:
    config = _config()
    table = RoutingTable(config)
    assert [d.name for d in Router(config).order("m", table.resolve("m"))] == ["a", "b", "c"]


def test_weighted_first_pick_follows_weights() -> None:
    config = _config("weighted")
    deployments = RoutingTable(config).resolve("m")
    router = Router(config, random.Random(7))
    firsts = Counter(router.order("m", deployments)[0].name for _ in range(6000))
    assert 0.07 < firsts["a"] / 6000 < 0.13
    assert 0.25 < firsts["b"] / 6000 < 0.35
    assert 0.55 < firsts["c"] / 6000 < 0.65


def test_least_busy_and_lowest_latency() -> None:
    deployments = RoutingTable(_config()).resolve("m")
    deployments[0].in_flight, deployments[1].in_flight, deployments[2].in_flight = 5, 0, 2
    busy = Router(_config("least_busy")).order("m", deployments)
    assert [d.name for d in busy] == ["b", "c", "a"]
    for deployment, seconds in zip(deployments, (0.3, 0.9, 0.1), strict=True):
        deployment.observe_latency(seconds)
    fast = Router(_config("lowest_latency")).order("m", deployments)
    assert [d.name for d in fast] == ["c", "a", "b"]


def test_what_is_retried() -> None:
    assert is_retryable(UpstreamError("x"))
    assert is_retryable(UpstreamTimeoutError("x"))
    assert is_retryable(OverloadedError("x"))
    assert is_retryable(UpstreamRejectedError("x", status_code=429))
    assert not is_retryable(UpstreamRejectedError("x", status_code=400))
    assert not is_retryable(InvalidRequestError("x"))


def _run(config: Config, outcomes: dict[str, list[Exception | None]]) -> tuple[Any, list[Attempt]]:
    table = RoutingTable(config)
    attempts: list[Attempt] = []

    async def operation(deployment: Any) -> str:
        failure = outcomes[deployment.name].pop(0)
        if failure is not None:
            raise failure
        return str(deployment.name)

    async def main() -> Any:
        return await Router(config).call("m", table.resolve("m"), operation, attempts)

    return asyncio.run(main()), attempts


def test_call_falls_back_and_lists_attempts() -> None:
    (result, deployment), attempts = _run(
        _config(), {"a": [UpstreamError("down")], "b": [None], "c": []}
    )
    assert result == "b" and deployment.in_flight == 1
    assert [(a.deployment, a.outcome, a.reason) for a in attempts] == [
        ("a", "failed", "bad_gateway"),
        ("b", "ok", None),
    ]


def test_client_errors_are_not_retried() -> None:
    with pytest.raises(InvalidRequestError):
        _run(_config(), {"a": [InvalidRequestError("bad")], "b": [None], "c": []})


def test_attempts_are_bounded() -> None:
    fail = UpstreamTimeoutError("slow")
    with pytest.raises(UpstreamTimeoutError):
        _run(_config(max_attempts=2), {"a": [fail], "b": [fail], "c": [None]})


def test_a_deployment_that_asked_to_wait_is_not_tried_again() -> None:
    told_to_wait = UpstreamRejectedError("slow down", status_code=429, retry_after="7")
    down = UpstreamError("down")
    (result, _), attempts = _run(
        _config(max_attempts=4), {"a": [told_to_wait], "b": [down, None], "c": [down]}
    )
    assert result == "b"
    assert [(a.deployment, a.outcome) for a in attempts] == [
        ("a", "failed"),
        ("b", "failed"),
        ("c", "failed"),
        ("b", "ok"),
    ]
    with pytest.raises(UpstreamRejectedError) as caught:
        _run(_config(max_attempts=4), {name: [told_to_wait] for name in "abc"})
    assert caught.value.headers == {"retry-after": "7"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_cools_down_and_probes_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2, cooldown_seconds=10), clock)
    assert breaker.admit() is None
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"
    assert "circuit open" in (breaker.admit() or "")
    clock.now = 10.5
    assert breaker.state == "half-open"
    assert breaker.admit() is None
    assert "probe" in (breaker.admit() or "")
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now = 21
    assert breaker.admit() is None
    breaker.record_success()
    assert breaker.state == "closed" and breaker.admit() is None
