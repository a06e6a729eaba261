"""A gateway whose PostgreSQL goes away mid-load — stopped and started again, or paused (SIGSTOP:
connected, silent) and continued: it keeps answering, /health says the ledger is spooling, and
once the database is back the ledger holds exactly one row per answered request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.backing import Backing, new_database, start_postgres
from tests.conftest import UPSTREAM_KEY, Server, fake_model, start_gateway
from tests.store.pausing import halt, pause, restart, resume, stop

WAIT_SECONDS = 120  # a bound on waiting for a state, not a timing check


@pytest.fixture
def own_postgres() -> Iterator[Backing]:
    server = start_postgres()
    yield server
    stop(server)


def health(gateway: Server) -> dict[str, object]:
    response = httpx.get(gateway.url + "/health", timeout=10)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def wait_for_health(gateway: Server, wanted: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        body = health(gateway)
        if (wanted == "ok" and body["status"] == "ok") or wanted in body["reasons"]:  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"/health never reported {wanted}: {health(gateway)}")


def answered(gateway: Server, count: int) -> list[str]:
    """Send `count` requests one after the other; each must be answered. Their request ids."""
    ids = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for _ in range(count):
            response = client.post(
                "/v1/chat/completions",
                json={"model": "fake/echo", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200, response.text
            ids.append(response.headers["x-request-id"])
    return ids


@pytest.mark.parametrize("outage", ["stopped", "paused"])
def test_the_gateway_answers_through_a_database_outage_and_the_ledger_loses_nothing(
    own_postgres: Backing, fake_openai: Server, tmp_path: Path, outage: str
) -> None:
    url = new_database(own_postgres.url)
    config = {
        "store": {
            "url": url,
            "ledger_flush_seconds": 0.05,
            "connect_timeout_seconds": 2,
            "statement_timeout_seconds": 2,
        },
        "models": [fake_model(fake_openai, "fake/echo", "echo-model")],
    }
    gateway = start_gateway(tmp_path, "gateway", config, {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        ids = answered(gateway, 20)
        wait_for_health(gateway, "ok")
        halt(own_postgres) if outage == "stopped" else pause(own_postgres)
        ids += answered(gateway, 40)
        wait_for_health(gateway, "ledger spooling")
        ids += answered(gateway, 20)  # still answering while the ledger waits on local disk
        restart(own_postgres) if outage == "stopped" else resume(own_postgres)
        wait_for_health(gateway, "ok")  # the spool is replayed
        ids += answered(gateway, 20)
    finally:
        gateway.stop()
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT request_id FROM usage_records")).scalars().all()
        totalled = conn.execute(text("SELECT sum(requests) FROM usage_daily")).scalar_one()
    engine.dispose()
    assert len(ids) == len(set(ids)) == 100
    assert sorted(stored) == sorted(ids)
    assert totalled == 100
