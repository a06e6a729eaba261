"""`kill -9` of one replica under load: the other keeps serving, the dead one's budget
reservations lapse and the budget comes back, nothing is billed twice, and the ledger holds
exactly what clients received (the dead replica's requests were all still in flight, so none of
its records waited in its batch).

The requests the killed replica held reach a slow upstream model; the hold of a reservation is
`max_attempts × timeouts.total + 30 s` here (no local models), so the test waits that long.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from tests.backing import new_database, start_redis
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, fake_model, start_gateway
from tests.fleet.test_limits import PRICE, REQUEST_NANOS, Fleet, redis_budget

SLOW, FAST = "fleet/slow", "fleet/fast"
TOTAL_SECONDS = 3.0
HOLD_SECONDS = TOTAL_SECONDS + 30  # limits.limiter.hold_seconds for this configuration
ASK = [{"role": "user", "content": "one two three"}]


def start(tmp: Path, fake: Server, postgres_url: str, redis_url: str) -> Fleet:
    database = new_database(postgres_url)
    timeouts = {"connect": 1, "first_token": TOTAL_SECONDS, "total": TOTAL_SECONDS}
    config = {
        "server": {"require_client_keys": True},
        "store": {"url": database, "ledger_flush_seconds": 0.05},
        "shared": {"backend": "redis"},
        "default_route": {"max_attempts": 1},
        "models": [
            fake_model(fake, SLOW, "sleep-2000", price=PRICE, timeouts=timeouts),
            fake_model(fake, FAST, "echo-model", price=PRICE, timeouts=timeouts),
        ],
    }
    env = {
        "ENTREPOT_ADMIN_KEY": ADMIN_KEY,
        "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
        "ENTREPOT_REDIS_URL": redis_url,
    }
    a = start_gateway(tmp, "a", config, env)
    b = start_gateway(tmp, "b", config, env)
    return Fleet((a, b), database, redis_url, tmp / "a.yaml")


async def _post(client: httpx.AsyncClient, server: Server, model: str) -> int | None:
    body = {"model": model, "max_tokens": 4, "messages": ASK}
    try:
        response = await client.post(server.url + "/v1/chat/completions", json=body)
    except httpx.HTTPError:
        return None  # the replica died under this request
    return response.status_code


async def load(fleet: Fleet, secret: str) -> tuple[list[int | None], list[int | None]]:
    """Twelve slow requests to replica A, killed while they wait; then fast ones to B."""
    a, b = fleet.replicas
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {secret}"}, timeout=30
    ) as client:
        doomed = [asyncio.create_task(_post(client, a, SLOW)) for _ in range(12)]
        await asyncio.sleep(0.8)  # admitted and waiting on the upstream
        os.kill(a.process.pid, signal.SIGKILL)
        survivors = await asyncio.gather(*(_post(client, b, FAST) for _ in range(8)))
        return list(await asyncio.gather(*doomed)), list(survivors)


def test_killing_a_replica_loses_nothing_and_bills_nothing_twice(
    tmp_path: Path, fake_openai: Server, postgres_url: str
) -> None:
    # A Redis of its own: key ids start at 1 in every test's database, and a shared Redis
    # would hold another test's spend under the same key id.
    redis = start_redis(tmp_path / "redis")
    fleet = start(tmp_path, fake_openai, postgres_url, redis.url)
    try:
        # Room for 20 requests: the 12 the dead replica holds, and 8 more.
        secret, key_id = fleet.key("survivor", budget={"amount": "0.08"})
        doomed, survivors = asyncio.run(load(fleet, secret))
        assert doomed == [None] * 12  # every request on A was cut off by its death
        assert survivors == [200] * 8  # B kept serving, within the budget left
        spent, reserved = redis_budget(fleet.redis_url, key_id)
        assert (spent, reserved) == (8 * REQUEST_NANOS, 12 * REQUEST_NANOS)
        # A's reservations block the budget until they lapse: B refuses meanwhile...
        with httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=30) as b:
            body = {"model": FAST, "max_tokens": 4, "messages": ASK}
            url = fleet.replicas[1].url + "/v1/chat/completions"
            assert b.post(url, json=body).status_code == 402
            time.sleep(HOLD_SECONDS + 1)
            # ...and serves again once they have: the budget came back.
            assert b.post(url, json=body).status_code == 200
        spent, reserved = redis_budget(fleet.redis_url, key_id)
        assert (spent, reserved) == (9 * REQUEST_NANOS, 0)
        records = fleet.ledger(key_id, 10)
        answered = [r for r in records if r["status"] == 200]
        assert len(answered) == 9  # exactly what clients received, each once
        assert len({r["request_id"] for r in records}) == len(records)
        assert sum(r["cost_nanos"] or 0 for r in records) == 9 * REQUEST_NANOS == spent
    finally:
        fleet.stop()
        redis.stop()
