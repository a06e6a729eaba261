"""The database stops taking writes under load: the gateway keeps serving, the ledger spools, and
once the database is back the ledger holds exactly the requests clients were answered — none
missing, none twice — including across a shutdown in the middle of the outage.

How the outage is made: the test process takes SQLite's write lock (`BEGIN EXCLUSIVE` on its own
connection) and holds it. Making the file or its directory unwritable with chmod does nothing
when the tests run as root, as they do here (root ignores permission bits), and `chattr +i` needs a
capability and a file system that containers often lack; a held write lock works for any user on
any file system. To the gateway it is an outage like a lost database server: every write fails
("database is locked", after the engine's 5-second busy timeout), reads go on, and it ends when
the lock is released.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
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

CLIENTS = 4
GATEWAY_ENV = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}


def outage_config(fake_openai: Server) -> dict[str, Any]:
    price = {"input_per_1m": "2.00", "output_per_1m": "8.00", "as_of": "2026-11-01"}
    return {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05, "ledger_batch_size": 20},
        "models": [fake_model(fake_openai, "fake/echo", "echo-model", price=price)],
    }


@pytest.fixture
def gateway(tmp_path: Path, fake_openai: Server) -> Iterator[Server]:
    server = start_gateway(tmp_path, "outage", outage_config(fake_openai), GATEWAY_ENV)
    yield server
    server.stop()


@contextmanager
def database_down(server: Server) -> Iterator[None]:
    """Hold the database's write lock: every write the gateway tries fails, reads go on."""
    assert server.data_dir is not None
    holder = sqlite3.connect(server.data_dir / "entrepot.db", isolation_level=None, timeout=30)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("COMMIT")
        holder.close()


def send(server: Server, key: str, count: int, tag: str) -> list[str]:
    """`count` chat requests from `CLIENTS` concurrent clients; the request id of each answer."""

    def one(index: int) -> str:
        body = {"model": "fake/echo", "messages": [{"role": "user", "content": f"{tag} {index}"}]}
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(count)))


def health(server: Server) -> dict[str, Any]:
    response = httpx.get(server.url + "/health", timeout=10)
    assert response.status_code == 200  # degraded or not, the gateway serves
    body: dict[str, Any] = response.json()
    return body


def metric(server: Server, name: str) -> float:
    response = httpx.get(
        server.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll until `condition` holds; the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


def spooled_ids(server: Server) -> set[str]:
    assert server.data_dir is not None
    segments = sorted((server.data_dir / "ledger-spool").glob("0*.jsonl"))
    lines = b"".join(path.read_bytes() for path in segments).splitlines()
    return {orjson.loads(line)["request_id"] for line in lines}


def assert_ledger_is_exactly(server: Server, answered: list[str]) -> None:
    ids = [row["request_id"] for row in ledger_rows(server, check_integrity=True)]
    assert len(ids) == len(set(ids)), "a request is recorded twice"
    assert set(answered) - set(ids) == set(), "answered requests missing from the ledger"
    assert set(ids) == set(answered)


def test_database_outage_under_load_loses_nothing(gateway: Server) -> None:
    key = create_key(gateway, "outage")
    answered = send(gateway, key, 60, "before")
    wait_for(lambda: len(ledger_rows(gateway)) == 60, "the first requests are written")

    with database_down(gateway):
        during: list[str] = []
        load = threading.Thread(target=lambda: during.extend(send(gateway, key, 80, "during")))
        load.start()
        wait_for(lambda: "ledger spooling" in health(gateway)["reasons"], "health degrades")
        load.join()
        assert len(during) == 80  # served throughout
        answered += during
        status = health(gateway)
        assert status["status"] == "degraded" and status["reasons"] == ["ledger spooling"]
        wait_for(lambda: spooled_ids(gateway) == set(during), "every record is on disk")
        assert status["ledger"]["spooled_bytes"] > 0
        assert metric(gateway, "entrepot_ledger_spooled_records") == 80
        assert len(ledger_rows(gateway)) == 60

    answered += send(gateway, key, 60, "after")
    wait_for(lambda: health(gateway)["status"] == "ok", "the spool is replayed")
    assert health(gateway)["ledger"] == {
        "spooled_records": 0,
        "spooled_bytes": 0,
        "quarantined_records": 0,
        "dropped_records": 0,
    }
    assert metric(gateway, "entrepot_ledger_spooled_records") == 0
    wait_for(lambda: len(ledger_rows(gateway)) >= 200, "the last requests are written")
    assert len(answered) == 200
    assert_ledger_is_exactly(gateway, answered)


def test_shutdown_during_an_outage_spools_and_the_next_start_replays(
    gateway: Server, tmp_path: Path, fake_openai: Server
) -> None:
    key = create_key(gateway, "outage-restart")
    answered = send(gateway, key, 20, "before")
    wait_for(lambda: len(ledger_rows(gateway)) == 20, "the first requests are written")

    with database_down(gateway):
        during = send(gateway, key, 50, "during")
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(timeout=60) in (0, -signal.SIGTERM)
        # The stop put what it held in memory on disk, not nowhere.
        assert spooled_ids(gateway) == set(during)
    answered += during
    assert len(ledger_rows(gateway)) == 20

    assert gateway.data_dir is not None
    (tmp_path / "restart").mkdir()
    env = {**GATEWAY_ENV, "ENTREPOT_DATA_DIR": str(gateway.data_dir)}
    restarted = start_gateway(tmp_path / "restart", "outage", outage_config(fake_openai), env)
    try:
        wait_for(lambda: health(restarted)["status"] == "ok", "the spool is replayed")
        assert spooled_ids(restarted) == set()
        answered += send(restarted, key, 10, "after")
        wait_for(lambda: len(ledger_rows(gateway)) >= 80, "the last requests are written")
    finally:
        restarted.stop()
    assert_ledger_is_exactly(gateway, answered)
