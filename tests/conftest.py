"""Real servers on loopback for the whole session: a fake OpenAI-compatible upstream, a fake
Anthropic upstream, a zero-config Entrepôt (the `make serve` default) used as a real remote
upstream, and the Entrepôt under test in front of all of them, with keys required.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# OpenAI's official spec ships with the tests (licence and source commit beside it), so a fresh
# clone needs nothing outside the repository.
SPEC_PATH = ROOT / "tests" / "specs" / "openai-openapi.yaml"
ADMIN_KEY = "test-admin-key-0123456789"
UPSTREAM_KEY = "test-upstream-key"
LOCAL = "local/smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not come up at {url}:\n{log.read_text()[-4000:]}")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path | None = None

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Ask a server to stop, and make it stop if it has not within 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_server(
    args: list[str], health: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    process = subprocess.Popen(
        args, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
    )
    wait_until_up(health, process, log)
    return process


def start_gateway(
    tmp: Path,
    name: str,
    config: dict[str, Any] | None,
    env: dict[str, str] | None = None,
    options: list[str] | None = None,
) -> Server:
    port = free_port()
    data_dir = tmp / f"{name}-data"
    args = [sys.executable, "-m", "entrepot", "serve", "--port", str(port), *(options or [])]
    if config is not None:
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    log = tmp / f"{name}.log"
    gateway_env = {"ENTREPOT_DATA_DIR": str(data_dir), "ENTREPOT_ADMIN_KEY": "", **(env or {})}
    process = start_server(args, f"http://127.0.0.1:{port}/health", log, gateway_env)
    return Server(f"http://127.0.0.1:{port}", process, log, data_dir)


def start_fake(tmp: Path, module: str, probe: str) -> Server:
    """Run one of the fake upstreams in `tests/fakes` as its own process."""
    port = free_port()
    log = tmp / f"{module}.log"
    args = [sys.executable, "-m", f"tests.fakes.{module}", str(port)]
    process = start_server(args, f"http://127.0.0.1:{port}{probe}", log)
    return Server(f"http://127.0.0.1:{port}", process, log)


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """In-process runs (`bench`, `audit`, the CLI) open the gateway's store, which defaults to
    the user's data directory: the tests' records go to a directory of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENTREPOT_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="session")
def fake_openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_fake(tmp_path_factory.mktemp("fake-openai"), "openai_upstream", "/v1/models")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fake-anthropic")
    server = start_fake(tmp, "anthropic_upstream", "/last-request")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def zero_config_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Entrepôt exactly as `make serve` starts it: no config, bundled model, no keys."""
    server = start_gateway(tmp_path_factory.mktemp("zero"), "zero", None)
    yield server
    server.stop()


def fake_model(fake: Server, alias: str, target: str, **fields: Any) -> dict[str, Any]:
    """A model served by a fake OpenAI-compatible upstream: in the US, called with the fake's
    key, unless `fields` say otherwise. `target` picks the fake's behaviour."""
    return {
        "alias": alias,
        "provider": "openai_compatible",
        "target": target,
        "base_url": fake.url + "/v1",
        "api_key_env": "FAKE_UPSTREAM_KEY",
        "jurisdiction": "US",
        **fields,
    }


def gateway_config(fake_openai: Server, fake_anthropic: Server, zero: Server) -> dict[str, Any]:
    as_of = "2026-11-01"

    remote = functools.partial(fake_model, fake_openai)

    price = {"input_per_1m": "2.00", "output_per_1m": "8.00", "currency": "USD", "as_of": as_of}
    return {
        "server": {"require_client_keys": True},
        "store": {"ledger_flush_seconds": 0.05},
        # One try per request and no circuit breaking: these tests check how each single
        # upstream failure is reported; routing has its own tests.
        "default_route": {"max_attempts": 1},
        "breaker": {"failure_threshold": 1000},
        "models": [
            {
                "alias": LOCAL,
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "licence": "Apache-2.0",
                "hardware_cost_per_hour": "0.36",
                # One seed for requests that give none, so answers repeat from run to run (served,
                # unseeded requests sample afresh: tests/providers/test_local_answers.py).
                "local": {"n_threads": 2, "max_queue": 8, "seed": 0},
            },
            {
                "alias": "local/embed",
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "local": {"embedding": True, "n_ctx": 512},
            },
            remote("fake/echo", "echo-model", price=price),
            remote("fake/reasoner", "reasoner", jurisdiction="CN", name="deepseek-direct"),
            remote("fake/embedder", "text-embedding-3-small"),
            remote("fake/broken", "fail-500"),
            remote("fake/rate-limited", "rate-limited"),
            remote("fake/hang", "hang", timeouts={"connect": 1, "total": 1.5}),
            remote("fake/reset", "reset"),
            remote("fake/midstream", "midstream-drop"),
            {
                **remote("dead/unreachable", "anything"),
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
            },
            {
                "alias": "fake/claude",
                "provider": "anthropic",
                "target": "claude-sonnet-4-5",
                "base_url": fake_anthropic.url,
                "api_key_env": "FAKE_ANTHROPIC_KEY",
                "jurisdiction": "US",
            },
            {
                "alias": "remote/smollm2",
                "provider": "openai_compatible",
                "target": LOCAL,
                "base_url": zero.url + "/v1",
                "jurisdiction": "local",
                "timeouts": {"connect": 5, "total": 120},
            },
        ],
    }


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    fake_openai: Server,
    fake_anthropic: Server,
    zero_config_gateway: Server,
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("gateway")
    config = gateway_config(fake_openai, fake_anthropic, zero_config_gateway)
    env = {
        "ENTREPOT_ADMIN_KEY": ADMIN_KEY,
        "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
        "FAKE_ANTHROPIC_KEY": "test-anthropic-key",
    }
    server = start_gateway(tmp, "gateway", config, env)
    yield server
    server.stop()


def admin(gateway: Server) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    )


def create_key(gateway: Server, name: str, **fields: Any) -> str:
    with admin(gateway) as client:
        response = client.post("/admin/keys", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


@pytest.fixture(scope="session")
def client_key(gateway: Server) -> str:
    return create_key(gateway, "tests")


@pytest.fixture(scope="session")
def client(gateway: Server, client_key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=client_key, max_retries=0, timeout=120
    )


def usage_record(gateway: Server, request_id: str, timeout: float = 10) -> dict[str, Any]:
    """The ledger row for one request, read from the store once the batch is flushed."""
    import sqlite3

    assert gateway.data_dir is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT * FROM usage_records WHERE request_id = ?", (request_id,)
            ).fetchall()
        if rows:
            assert len(rows) == 1
            return dict(rows[0])
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {request_id}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server for the session (see tests/backing.py)."""
    from tests.backing import start_postgres

    server = start_postgres()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Redis server for the session (see tests/backing.py)."""
    from tests.backing import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()
