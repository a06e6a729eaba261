"""Limits and budgets across two replicas (separate gateway processes) on one Redis and one
PostgreSQL ledger: exact budgets and rates under concurrent load split between them, Redis
stopped mid-run (fail closed, fail open) and back, and `entrepot reconcile` on a planted drift.

The fake upstream's `echo-model` counts tokens as words; the models here charge only for output,
and each request asks for exactly the four words it gets ("echo: one two three"), so its worst
case is its real cost and a budget of ten of them fits exactly ten.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import create_engine, text

from tests.backing import Backing, new_database, start_redis
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, create_key, fake_model, start_gateway
from tests.fleet.redis_control import restart

MODEL = "fleet/echo"
PRICE = {"input_per_1m": "0", "output_per_1m": "1000", "as_of": "2026-05-01"}
REQUEST_NANOS = 4 * 1_000_000  # four output tokens at 1000 USD per million
BODY = {
    "model": MODEL,
    "max_tokens": 4,
    "messages": [{"role": "user", "content": "one two three"}],
}
RECOVERY_SECONDS = 30  # a bound on waiting for recovery, not a timing check


@dataclass
class Fleet:
    replicas: tuple[Server, Server]
    database: str
    redis_url: str
    config: Path

    def stop(self) -> None:
        for server in self.replicas:
            server.stop()

    def key(self, name: str, **fields: Any) -> tuple[str, int]:
        """A new key (its secret and id), created through the first replica."""
        secret = create_key(self.replicas[0], name, **fields)
        with create_engine(self.database).connect() as conn:
            key_id = conn.execute(text("SELECT id FROM api_keys WHERE name = :n"), {"n": name})
            return secret, int(key_id.scalar_one())

    def spent(self, key_id: int, expected: int) -> int:
        """What the ledger says the key spent, once it is `expected` (or after a while)."""
        deadline = time.monotonic() + RECOVERY_SECONDS
        while True:
            spent = sum(r["cost_nanos"] or 0 for r in self.ledger(key_id, 0))
            if spent >= expected or time.monotonic() > deadline:
                return spent
            time.sleep(0.05)

    def ledger(self, key_id: int, expected: int) -> list[dict[str, Any]]:
        """The key's usage records, once all `expected` are in the store."""
        engine = create_engine(self.database)
        deadline = time.monotonic() + RECOVERY_SECONDS
        try:
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(
                        text("SELECT * FROM usage_records WHERE key_id = :k"), {"k": key_id}
                    )
                    records = [dict(row._mapping) for row in rows]
                if len(records) >= expected or time.monotonic() > deadline:
                    return records
                time.sleep(0.05)
        finally:
            engine.dispose()


def start_fleet(tmp: Path, fake: Server, postgres_url: str, redis_url: str, **shared: str) -> Fleet:
    database = new_database(postgres_url)
    config = {
        "server": {"require_client_keys": True},
        "store": {"url": database, "ledger_flush_seconds": 0.05},
        "shared": {"backend": "redis", **shared},
        "default_route": {"max_attempts": 1},
        "models": [fake_model(fake, MODEL, "echo-model", price=PRICE)],
    }
    env = {
        "ENTREPOT_ADMIN_KEY": ADMIN_KEY,
        "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
        "ENTREPOT_REDIS_URL": redis_url,
    }
    a = start_gateway(tmp, "a", config, env)
    b = start_gateway(tmp, "b", config, env)
    return Fleet((a, b), database, redis_url, tmp / "a.yaml")


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server, postgres_url: str, redis_url: str
) -> Iterator[Fleet]:
    fleet = start_fleet(
        tmp_path_factory.mktemp("fleet-limits"), fake_openai, postgres_url, redis_url
    )
    yield fleet
    fleet.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Backing]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


def chat(server: Server, secret: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


async def burst(
    fleet: Fleet, secret: str, requests: int, replicas: int = 2
) -> list[httpx.Response]:
    """`requests` at once, alternately to each of the first `replicas` (a round robin)."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        fleet.replicas[i % replicas].url + "/v1/chat/completions", json=BODY
                    )
                    for i in range(requests)
                )
            )
        )


def budget_counter(key_id: int) -> str:
    return f"entrepot:limits:b:key:{key_id}:budget:USD:{dt.datetime.now(dt.UTC):%Y-%m}"


def redis_budget(url: str, key_id: int) -> tuple[int, int]:
    client = Redis.from_url(url)
    try:
        spent, reserved = client.hmget(budget_counter(key_id), ["spent", "reserved"])
        return int(spent or 0), int(reserved or 0)
    finally:
        client.close()


def test_a_budget_for_ten_answers_ten_of_64_across_two_replicas(fleet: Fleet) -> None:
    secret, key_id = fleet.key("ten", budget={"amount": "0.04"})
    responses = asyncio.run(burst(fleet, secret, 64))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [402] * 54
    refused = next(r for r in responses if r.status_code == 402)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    served_by = {r.headers["x-entrepot-deployment"] for r in responses if r.status_code == 200}
    assert served_by  # answered, by the one deployment both replicas share
    records = fleet.ledger(key_id, 64)
    assert len(records) == 64
    assert sum(r["cost_nanos"] or 0 for r in records) == 10 * REQUEST_NANOS == 40_000_000
    assert redis_budget(fleet.redis_url, key_id) == (40_000_000, 0)


def test_a_burst_beyond_the_redis_pool_waits_for_a_connection(fleet: Fleet) -> None:
    """More concurrent requests than the client has Redis connections: they queue for one, and
    a healthy Redis is never taken for an unreachable one (503 `limits_unavailable`)."""
    secret, _ = fleet.key("bursty", budget={"amount": "1000"})
    responses = asyncio.run(burst(fleet, secret, 600, replicas=1))
    assert sorted(r.status_code for r in responses) == [200] * 600


def test_requests_per_minute_hold_across_replicas(fleet: Fleet) -> None:
    secret, _ = fleet.key("six-a-minute", requests_per_minute=6)
    statuses = [chat(fleet.replicas[i % 2], secret).status_code for i in range(12)]
    assert statuses == [200] * 6 + [429] * 6


def test_reconcile_finds_and_fixes_a_planted_drift(fleet: Fleet, tmp_path: Path) -> None:
    secret, key_id = fleet.key("drifting", budget={"amount": "1"})
    for i in range(3):
        assert chat(fleet.replicas[i % 2], secret).status_code == 200
    assert len(fleet.ledger(key_id, 3)) == 3
    client = Redis.from_url(fleet.redis_url)
    try:
        client.hincrby(budget_counter(key_id), "spent", 12_345)  # Redis lost or gained a write
    finally:
        client.close()

    def reconcile(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "entrepot",
                "reconcile",
                "--config",
                str(fleet.config),
                *options,
            ],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "ENTREPOT_REDIS_URL": fleet.redis_url,
                "ENTREPOT_DATA_DIR": str(tmp_path),
                "COLUMNS": "80",
            },
            timeout=60,
        )

    found = reconcile()
    assert found.returncode == 1, found.stdout + found.stderr
    line = next(line for line in found.stdout.splitlines() if "'drifting'" in line)
    cells = [cell.strip() for cell in line.strip("│ ").split("│")]
    assert cells[-3:] == ["0.012000000", "0.012012345", "+0.000012345"]
    assert all(len(line) <= 80 for line in found.stdout.splitlines()), found.stdout
    assert "--fix sets Redis's spend to the ledger's" in found.stdout

    fixed = reconcile("--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "set to the ledger's spend" in fixed.stdout
    assert redis_budget(fleet.redis_url, key_id) == (3 * REQUEST_NANOS, 0)
    again = reconcile()
    assert again.returncode == 0 and "0 drifted" in again.stdout


def healthy(replica: Server) -> bool:
    return "limits" not in httpx.get(replica.url + "/health", timeout=10).json()["reasons"]


def wait_for(condition: Any) -> Any:
    """Poll `condition` until it returns something true (bounded: not a timing check)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_redis_stopped_fails_limited_keys_closed_and_recovers(
    tmp_path: Path, fake_openai: Server, postgres_url: str, own_redis: Backing
) -> None:
    fleet = start_fleet(tmp_path, fake_openai, postgres_url, own_redis.url)
    try:
        limited, limited_id = fleet.key("limited", budget={"amount": "1"})
        free, _ = fleet.key("free")
        for replica in fleet.replicas:
            assert chat(replica, limited).status_code == 200
        # In the ledger before Redis goes: a re-seed reads the ledger, and a record still in a
        # replica's batch (the documented flush window) would be missed by it.
        assert fleet.spent(limited_id, 2 * REQUEST_NANOS) == 2 * REQUEST_NANOS
        own_redis.stop()
        for replica in fleet.replicas:
            refused = chat(replica, limited)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "limits_unavailable"
            assert refused.headers["retry-after"] == "1"
            assert chat(replica, free).status_code == 200
            health = httpx.get(replica.url + "/health", timeout=10).json()
            assert health["status"] == "degraded" and "limits" in health["reasons"]
        restart(own_redis)  # empty: its counters are gone
        for replica in fleet.replicas:
            assert wait_for(lambda r=replica: chat(r, limited).status_code == 200)
            assert healthy(replica)
        # Seeded again from the ledger: the two before, then the two after.
        assert fleet.spent(limited_id, 4 * REQUEST_NANOS) == 4 * REQUEST_NANOS
        assert redis_budget(own_redis.url, limited_id) == (4 * REQUEST_NANOS, 0)
    finally:
        fleet.stop()


def test_redis_stopped_fails_open_on_local_counters_flagged_in_the_ledger(
    tmp_path: Path, fake_openai: Server, postgres_url: str, own_redis: Backing
) -> None:
    fleet = start_fleet(tmp_path, fake_openai, postgres_url, own_redis.url, on_unavailable="open")
    try:
        secret, key_id = fleet.key("open", budget={"amount": "1"})
        before = [chat(replica, secret) for replica in fleet.replicas]
        assert fleet.spent(key_id, 2 * REQUEST_NANOS) == 2 * REQUEST_NANOS  # as above
        own_redis.stop()
        during = [chat(replica, secret) for replica in fleet.replicas]
        restart(own_redis)
        for replica in fleet.replicas:  # each finds Redis again (its health check asks it)
            assert wait_for(lambda r=replica: healthy(r))
        after = [chat(replica, secret) for replica in fleet.replicas]
        assert all(r.status_code == 200 for r in [*before, *during, *after])
        flags = {r["request_id"]: r["limits_degraded"] for r in fleet.ledger(key_id, 6)}
        assert [flags[r.headers["x-request-id"]] for r in before] == [False, False]
        assert [flags[r.headers["x-request-id"]] for r in during] == [True, True]
        assert [flags[r.headers["x-request-id"]] for r in after] == [False, False]
        assert redis_budget(own_redis.url, key_id) == (6 * REQUEST_NANOS, 0)
    finally:
        fleet.stop()
