"""Crash safety: `kill -9` under load loses at most the records of one ledger batch window and
leaves no partial record; SIGTERM drains in-flight requests and loses nothing."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ADMIN_KEY,
    UPSTREAM_KEY,
    Server,
    create_key,
    fake_model,
    start_gateway,
)
from tests.reliability.harness import ledger_rows

FLUSH_SECONDS = 0.25
BATCH_SIZE = 500
CLIENTS = 8
SLOW_MODEL_MS = 1500


def crash_config(fake_openai: Server) -> dict[str, Any]:
    price = {"input_per_1m": "2.00", "output_per_1m": "8.00", "as_of": "2026-11-01"}
    return {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": FLUSH_SECONDS, "ledger_batch_size": BATCH_SIZE},
        "models": [
            fake_model(fake_openai, "fake/echo", "echo-model", price=price),
            fake_model(fake_openai, "fake/slow", f"sleep-{SLOW_MODEL_MS}", price=price),
        ],
    }


GATEWAY_ENV = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}


@pytest.fixture
def crash_gateway(tmp_path: Path, fake_openai: Server) -> Iterator[Server]:
    server = start_gateway(tmp_path, "crash", crash_config(fake_openai), GATEWAY_ENV)
    yield server
    server.stop()


def restart(server: Server, tmp: Path, fake_openai: Server) -> Server:
    """The same data directory, as an operator's restart would find it."""
    assert server.data_dir is not None
    env = {**GATEWAY_ENV, "ENTREPOT_DATA_DIR": str(server.data_dir)}
    tmp.mkdir()
    return start_gateway(tmp, "crash", crash_config(fake_openai), env)


class Load:
    """Clients sending chat requests until told to stop; keeps the ids of answered requests."""

    def __init__(self, server: Server, key: str, model: str) -> None:
        self.url = server.url + "/v1/chat/completions"
        self.headers = {"authorization": f"Bearer {key}"}
        self.model = model
        self.answered: list[str] = []
        self.unexpected: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def client(self, index: int) -> None:
        with httpx.Client(timeout=30) as http:
            sent = 0
            while not self.stop.is_set():
                sent += 1
                body = {
                    "model": self.model,
                    "messages": [{"role": "user", "content": f"client {index} request {sent}"}],
                }
                try:
                    response = http.post(self.url, json=body, headers=self.headers)
                except httpx.TransportError:
                    return
                with self._lock:
                    if response.status_code == 200:
                        self.answered.append(response.headers["x-request-id"])
                    else:
                        self.unexpected.append(f"{response.status_code} {response.text[:200]}")

    def run_until(self, condition: Any, clients: int = CLIENTS) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(clients)
        for index in range(clients):
            pool.submit(self.client, index)
        deadline = time.monotonic() + 60
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        return pool


def assert_complete(rows: list[dict[str, Any]]) -> None:
    """A record is all there or not there: every answered request's row has its outcome,
    tokens, cost and deployment."""
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        assert row["status"] == 200, dict(row)
        assert row["deployment"] and row["created_at"] and row["latency_ms"] is not None
        assert row["completion_tokens"] > 0 and row["cost_nanos"] > 0
        assert row["currency"] == "USD" and row["price_date"] == "2026-11-01"


def test_kill_9_under_load_loses_at_most_one_batch_window(
    crash_gateway: Server, tmp_path: Path, fake_openai: Server
) -> None:
    key = create_key(crash_gateway, "crash")
    load = Load(crash_gateway, key, "fake/echo")
    pool = load.run_until(lambda: len(load.answered) >= 1500)
    crash_gateway.process.send_signal(signal.SIGKILL)
    crash_gateway.process.wait()
    load.stop.set()
    pool.shutdown()
    assert not load.unexpected

    restarted = restart(crash_gateway, tmp_path / "after", fake_openai)
    try:
        assert httpx.get(restarted.url + "/health").status_code == 200
        assert crash_gateway.data_dir is not None
        rows = ledger_rows(crash_gateway, check_integrity=True)
        recorded = {row["request_id"] for row in rows}
        # Nothing is recorded that the client did not get.
        assert recorded <= set(load.answered)
        assert_complete(rows)
        lost = len(set(load.answered) - recorded)
        print(f"kill -9 after {len(load.answered)} answers: {lost} records lost")
        assert lost <= BATCH_SIZE
        # The restarted gateway records normally on the same store.
        answer = httpx.post(
            restarted.url + "/v1/chat/completions",
            json={"model": "fake/echo", "messages": [{"role": "user", "content": "after"}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200
    finally:
        restarted.stop()
    after = {row["request_id"] for row in ledger_rows(crash_gateway, check_integrity=True)}
    assert answer.headers["x-request-id"] in after


def test_sigterm_drains_in_flight_requests_and_loses_nothing(crash_gateway: Server) -> None:
    key = create_key(crash_gateway, "drain")
    fast = Load(crash_gateway, key, "fake/echo")
    slow = Load(crash_gateway, key, "fake/slow")
    fast_pool = fast.run_until(lambda: len(fast.answered) >= 200, clients=2)
    # Slow requests are now waiting on the upstream; the stop must let them finish.
    slow_pool = slow.run_until(lambda: True, clients=4)
    time.sleep(SLOW_MODEL_MS / 3000)
    crash_gateway.process.send_signal(signal.SIGTERM)
    # The server re-raises SIGTERM once it has shut down cleanly, so that is its exit status.
    assert crash_gateway.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in crash_gateway.log.read_text()
    for load, pool in ((fast, fast_pool), (slow, slow_pool)):
        load.stop.set()
        pool.shutdown()
        assert not load.unexpected
    assert len(slow.answered) >= 4

    assert crash_gateway.data_dir is not None
    rows = ledger_rows(crash_gateway, check_integrity=True)
    assert_complete(rows)
    assert {row["request_id"] for row in rows} == set(fast.answered) | set(slow.answered)
