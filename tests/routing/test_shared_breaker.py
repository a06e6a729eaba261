"""Circuit breakers shared through a real Redis: two fleets of breakers on one server stand for
two replicas, each refreshing its mirror when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from entrepot.config import BreakerConfig
from entrepot.routing.breaker import Outcome, Pass
from entrepot.routing.shared_breaker import PROBE_ELSEWHERE, BreakerFleet, SharedBreaker
from tests.backing import Backing, start_redis

COOLDOWN = 0.3


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Backing]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


def _replica(url: str, threshold: int = 2) -> tuple[BreakerFleet, SharedBreaker]:
    config = BreakerConfig(failure_threshold=threshold, cooldown_seconds=COOLDOWN)
    fleet = BreakerFleet(Redis.from_url(url), config)
    return fleet, fleet.breaker("fake/upstream")


async def _settled(*fleets: BreakerFleet) -> None:
    """Every write made, then every mirror refreshed: what the refresh loop does within
    its interval."""
    for fleet in fleets:
        await fleet.work.drain()
    for fleet in fleets:
        await fleet.refresh()


async def _admit(breaker: SharedBreaker) -> Pass | str:
    """What the router does: admit, and claim the probe if it is one."""
    admitted = breaker.admit()
    return await breaker.claim_probe() if admitted is Pass.PROBE else admitted


def test_failures_on_two_replicas_open_the_circuit_on_both(redis_server: Backing) -> None:
    async def main() -> None:
        (fleet_a, a), (fleet_b, b) = _replica(redis_server.url), _replica(redis_server.url)
        a.resolve(a.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet_a, fleet_b)
        assert a.state == b.state == "closed"
        b.resolve(b.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet_a, fleet_b)
        assert a.state == b.state == "open"
        assert "circuit open after 2 failures" in str(a.admit())

    asyncio.run(main())


def test_a_stream_broken_on_one_replica_counts_on_the_other(redis_server: Backing) -> None:
    async def main() -> None:
        (fleet_a, a), (fleet_b, b) = _replica(redis_server.url), _replica(redis_server.url)
        for breaker in (a, b):
            breaker.resolve(breaker.admit(), Outcome.STARTED)  # type: ignore[arg-type]
            breaker.record_failure()
        await _settled(fleet_a, fleet_b)
        assert a.state == b.state == "open"

    asyncio.run(main())


def test_the_fleet_sends_one_probe_and_its_success_closes_the_circuit_everywhere(
    redis_server: Backing,
) -> None:
    async def main() -> None:
        (fleet_a, a), (fleet_b, b) = _replica(redis_server.url, 1), _replica(redis_server.url, 1)
        a.resolve(a.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet_a, fleet_b)
        await asyncio.sleep(COOLDOWN)
        assert a.state == b.state == "half-open"
        probe = await _admit(a)
        assert probe is Pass.PROBE
        # B's mirror does not know yet: it asks, and is refused.
        assert await _admit(b) == PROBE_ELSEWHERE
        assert b.refusal() == PROBE_ELSEWHERE
        await _settled(fleet_a, fleet_b)
        assert b.admit() == PROBE_ELSEWHERE  # known from the mirror now, without asking
        a.resolve(probe, Outcome.SUCCESS)
        await _settled(fleet_a, fleet_b)
        assert a.state == b.state == "closed"
        assert b.admit() is Pass.REGULAR

    asyncio.run(main())


def test_a_failed_probe_reopens_the_circuit_for_the_fleet(redis_server: Backing) -> None:
    async def main() -> None:
        (fleet_a, a), (fleet_b, b) = _replica(redis_server.url, 1), _replica(redis_server.url, 1)
        a.resolve(a.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet_a, fleet_b)
        await asyncio.sleep(COOLDOWN)
        probe = await _admit(b)
        assert probe is Pass.PROBE
        b.resolve(probe, Outcome.FAILURE)
        await _settled(fleet_a, fleet_b)
        assert a.state == b.state == "open"
        await asyncio.sleep(COOLDOWN)
        assert await _admit(a) is Pass.PROBE  # the lease went with the failed probe

    asyncio.run(main())


def test_the_probe_lease_of_a_replica_that_died_expires(redis_server: Backing) -> None:
    async def main() -> None:
        (fleet_a, a), (fleet_b, b) = _replica(redis_server.url, 1), _replica(redis_server.url, 1)
        a.resolve(a.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet_a, fleet_b)
        await asyncio.sleep(COOLDOWN)
        assert await _admit(a) is Pass.PROBE  # ... and A dies: never resolved
        assert await _admit(b) == PROBE_ELSEWHERE
        admitted: Pass | str = PROBE_ELSEWHERE
        for _ in range(50):
            await asyncio.sleep(COOLDOWN / 5)
            await fleet_b.refresh()
            admitted = await _admit(b)
            if admitted is Pass.PROBE:
                break
        assert admitted is Pass.PROBE

    asyncio.run(main())


def test_a_claim_cancelled_gives_the_probe_back(redis_server: Backing) -> None:
    async def main() -> None:
        (fleet_a, a), (fleet_b, b) = _replica(redis_server.url, 1), _replica(redis_server.url, 1)
        a.resolve(a.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet_a, fleet_b)
        await asyncio.sleep(COOLDOWN)
        assert a.admit() is Pass.PROBE
        admin = Redis.from_url(redis_server.url)
        await admin.client_pause(300)  # the claim waits for Redis ...
        claim = asyncio.create_task(a.claim_probe())
        await asyncio.sleep(0.05)
        claim.cancel()  # ... and its client goes away
        with pytest.raises(asyncio.CancelledError):
            await claim
        assert a.refusal() is None  # this replica may probe again
        await _settled(fleet_a, fleet_b)
        assert await _admit(b) is Pass.PROBE  # and so may the fleet

    asyncio.run(main())


def test_without_redis_each_replica_keeps_a_breaker_of_its_own(redis_server: Backing) -> None:
    async def main() -> None:
        fleet, breaker = _replica(redis_server.url, 1)
        await fleet.refresh()
        redis_server.stop()
        breaker.resolve(breaker.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet)
        assert breaker.state == "open"
        await asyncio.sleep(COOLDOWN)
        probe = await _admit(breaker)
        assert probe is Pass.PROBE
        assert "probe" in str(breaker.admit())
        breaker.resolve(probe, Outcome.SUCCESS)
        await _settled(fleet)
        assert breaker.state == "closed"

    asyncio.run(main())


def test_a_probe_that_ends_without_a_verdict_gives_the_fleet_its_lease_back(
    redis_server: Backing,
) -> None:
    """A probe answered with a 400, ended by an unexpected error or cancelled says nothing of
    the deployment's health: the next request, on any replica, probes again at once."""

    async def main() -> None:
        (fleet_a, a), (fleet_b, b) = _replica(redis_server.url, 1), _replica(redis_server.url, 1)
        a.resolve(a.admit(), Outcome.FAILURE)  # type: ignore[arg-type]
        await _settled(fleet_a, fleet_b)
        for prober, other in ((a, b), (b, a), (a, b)):
            await asyncio.sleep(COOLDOWN)
            probe = await _admit(prober)
            assert probe is Pass.PROBE
            assert await _admit(other) == PROBE_ELSEWHERE
            prober.resolve(probe, Outcome.NEUTRAL)
            await _settled(fleet_a, fleet_b)
            assert a.state == b.state == "half-open"
            probe = await _admit(other)  # within the lease's cool-down: it was given back
            assert probe is Pass.PROBE
            other.resolve(probe, Outcome.FAILURE)
            await _settled(fleet_a, fleet_b)
            assert a.state == b.state == "open"

    asyncio.run(main())
