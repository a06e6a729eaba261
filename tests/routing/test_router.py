"""The router and circuit breaker in isolation: strategy orders, retry rules, breaker states."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import pytest

from entrepot.config import BreakerConfig, Config, ModelConfig
from entrepot.exceptions import (
    GatewayError,
    InvalidRequestError,
    OverloadedError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
)
from entrepot.routing.breaker import CircuitBreaker, Outcome, Pass
from entrepot.routing.router import Router, is_retryable
from entrepot.routing.table import RoutingTable
from entrepot.types import Attempt


def _config(strategy: str = "fallback", solo: bool = False, **route: Any) -> Config:
    """Three deployments of `m` (a, b, c with weights 1, 3, 6), or only `a` if `solo`."""
    models = [
        ModelConfig(
            alias="m",
            name=name,
            provider="openai_compatible",
            target="t",
            base_url="http://127.0.0.1:9/v1",
            weight=weight,
        )
        for name, weight in (("a", 1.0), ("b", 3.0), ("c", 6.0))[: 1 if solo else 3]
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
        _config(max_attempts=4), {"a": [told_to_wait], "b": [down], "c": [None]}
    )
    assert result == "c"
    assert [(a.deployment, a.outcome) for a in attempts] == [
        ("a", "failed"),
        ("b", "failed"),
        ("c", "ok"),
    ]
    with pytest.raises(UpstreamRejectedError) as caught:
        _run(_config(max_attempts=4), {name: [told_to_wait] for name in "abc"})
    assert caught.value.headers == {"retry-after": "7"}


@pytest.mark.parametrize("failure", [UpstreamTimeoutError("slow"), UpstreamError("down")])
def test_a_failed_generation_is_never_sent_to_the_same_deployment_again(
    failure: Exception,
) -> None:
    """It may have run to its end upstream: a second send would pay for it twice."""
    config = _config(solo=True, max_attempts=3)
    calls: list[str] = []

    async def operation(deployment: Any) -> str:
        calls.append(deployment.name)
        raise failure

    attempts: list[Attempt] = []
    with pytest.raises(type(failure)):
        asyncio.run(
            Router(config).call("m", RoutingTable(config).resolve("m"), operation, attempts)
        )
    assert calls == ["a"]
    assert [(a.deployment, a.outcome) for a in attempts] == [("a", "failed")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_cools_down_and_probes_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2, cooldown_seconds=10), clock)
    admitted = breaker.admit()
    assert admitted is Pass.REGULAR
    breaker.resolve(admitted, Outcome.FAILURE)
    assert breaker.state == "closed"
    breaker.resolve(breaker.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
    assert breaker.state == "open"
    assert "circuit open" in str(breaker.admit())
    clock.now = 10.5
    assert breaker.state == "half-open"
    assert breaker.refusal() is None
    probe = breaker.admit()
    assert probe is Pass.PROBE
    assert "probe" in str(breaker.admit()) and "probe" in str(breaker.refusal())
    breaker.resolve(probe, Outcome.FAILURE)
    assert breaker.state == "open"
    clock.now = 21
    probe = breaker.admit()
    assert probe is Pass.PROBE
    breaker.resolve(probe, Outcome.SUCCESS)
    assert breaker.state == "closed" and breaker.admit() is Pass.REGULAR


def test_a_started_stream_is_judged_at_its_end() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2, cooldown_seconds=10), clock)
    for _ in range(2):  # streams that start, then break mid-answer
        breaker.resolve(breaker.admit(), Outcome.STARTED)  # type: ignore[arg-type]
        breaker.record_failure()
    assert breaker.state == "open"
    clock.now = 11
    probe = breaker.admit()
    assert probe is Pass.PROBE
    breaker.resolve(probe, Outcome.STARTED)  # the probe's stream started: the probe is released
    assert breaker.state == "closed" and breaker.refusal() is None
    breaker.record_failure()  # ... and broke: still failing, so the circuit opens again at once
    assert breaker.state == "open"
    clock.now = 22
    breaker.resolve(breaker.admit(), Outcome.STARTED)  # type: ignore[arg-type]
    breaker.record_success()  # a stream that reached its end clears the count
    breaker.resolve(breaker.admit(), Outcome.STARTED)  # type: ignore[arg-type]
    breaker.record_failure()
    assert breaker.state == "closed"


def test_refusal_changes_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown_seconds=10), clock)
    breaker.resolve(breaker.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
    clock.now = 11
    for _ in range(3):
        assert breaker.refusal() is None
    assert breaker.admit() is Pass.PROBE


def _half_open(config: Config) -> tuple[RoutingTable, Clock]:
    """A table whose first deployment has just finished its cool-down: its next call probes."""
    table = RoutingTable(config)
    clock = Clock()
    first = table.resolve("m")[0]
    first.breaker = CircuitBreaker(config.breaker, clock)
    for _ in range(config.breaker.failure_threshold):
        first.breaker.resolve(first.breaker.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
    assert first.breaker.state == "open"
    clock.now = config.breaker.cooldown_seconds + 1
    assert first.breaker.state == "half-open"
    return table, clock


def _probe_once(config: Config, table: RoutingTable, operation: Any) -> None:
    async def main() -> None:
        await Router(config).call("m", table.resolve("m")[:1], operation, [])

    with contextlib.suppress(GatewayError, RuntimeError, asyncio.CancelledError):
        asyncio.run(main())


async def _rejected_call(deployment: Any) -> Any:
    raise UpstreamRejectedError("messages: field required", status_code=400)


async def _broken_call(deployment: Any) -> Any:
    raise RuntimeError("a bug in a provider")


async def _cancelled_call(deployment: Any) -> Any:
    raise asyncio.CancelledError  # as when the client goes away mid-probe


@pytest.mark.parametrize(
    "operation",
    [_rejected_call, _broken_call, _cancelled_call],
    ids=["upstream-400", "unexpected-exception", "cancelled"],
)
def test_every_probe_outcome_releases_the_probe(operation: Any) -> None:
    config = _config()
    table, _ = _half_open(config)
    breaker = table.resolve("m")[0].breaker
    _probe_once(config, table, operation)
    # Released, and no verdict either way: a 400 or a cancelled call says nothing about
    # whether the deployment recovered, so the next request probes again.
    assert breaker.state == "half-open"
    assert breaker.refusal() is None
    assert breaker.admit() is Pass.PROBE


def test_a_probe_cancelled_while_in_flight_is_released() -> None:
    config = _config()
    table, _ = _half_open(config)
    breaker = table.resolve("m")[0].breaker
    started = asyncio.Event()

    async def hang(deployment: Any) -> Any:
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        call = asyncio.create_task(Router(config).call("m", table.resolve("m")[:1], hang, []))
        await started.wait()
        assert "probe is already in flight" in str(breaker.refusal())
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(main())
    assert breaker.admit() is Pass.PROBE
    assert table.resolve("m")[0].in_flight == 0


def test_a_request_counts_once_and_its_own_errors_not_at_all() -> None:
    config = _config(solo=True, max_attempts=3)
    table = RoutingTable(config)
    breaker = table.resolve("m")[0].breaker

    async def fail(deployment: Any) -> Any:
        raise UpstreamError("upstream exploded on this input")

    async def call(operation: Any) -> None:
        with pytest.raises(GatewayError):
            await Router(config).call("m", table.resolve("m"), operation, [])

    asyncio.run(call(fail))  # threshold 2: one request, however many tries it allows, is one
    assert breaker.state == "closed"
    for _ in range(5):  # a malformed request sent again and again is the client's problem
        asyncio.run(call(_rejected_call))
    assert breaker.state == "closed"


def test_preview_says_what_call_would_do_without_doing_it() -> None:
    config = _config(max_attempts=1)
    table, _ = _half_open(config)
    deployments = table.resolve("m")
    plan = Router(config).preview("m", deployments)
    assert [(d.name, why) for d, why in plan] == [
        ("a", None),
        ("b", "never reached: max_attempts is 1"),
        ("c", "never reached: max_attempts is 1"),
    ]
    assert deployments[0].breaker.admit() is Pass.PROBE  # the preview did not take the probe
    assert Router(config).preview("m", deployments)[0][1] == (
        "circuit half-open; a probe is already in flight"
    )
