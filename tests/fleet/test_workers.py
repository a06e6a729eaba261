"""`entrepot serve --workers N`: several worker processes behind one port, sharing Redis —
refused without the shared backend, and every worker really serving when it is there."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import ROOT, UPSTREAM_KEY, Server, fake_model, start_gateway

ASK = {"model": "fake/echo", "messages": [{"role": "user", "content": "hello there"}]}


def test_several_workers_need_the_shared_backend(tmp_path: Path, fake_openai: Server) -> None:
    config = tmp_path / "entrepot.yaml"
    config.write_text(yaml.safe_dump({"models": [fake_model(fake_openai, "fake/echo", "echo")]}))
    result = subprocess.run(
        [sys.executable, "-m", "entrepot", "serve", "--workers", "2", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "needs shared.backend: redis" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: Server, redis_url: str
) -> Iterator[Server]:
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "shared": {"backend": "redis"},
        "models": [fake_model(fake_openai, "fake/echo", "echo-model")],
    }
    env = {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY, "ENTREPOT_REDIS_URL": redis_url}
    tmp = tmp_path_factory.mktemp("workers")
    server = start_gateway(tmp, "workers", config, env, options=["--workers", "2"])
    yield server
    server.stop()


def test_every_worker_serves(two_workers: Server) -> None:
    children = psutil.Process(two_workers.process.pid).children()
    # uvicorn's supervisor spawns the workers (beside multiprocessing's resource tracker)
    workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2
    before = {w.pid: sum(w.cpu_times()[:2]) for w in workers}
    with httpx.Client(base_url=two_workers.url, timeout=30) as client:

        def ask(_: int) -> int:
            return client.post("/v1/chat/completions", json=ASK).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(ask, range(400)))
    assert statuses == [200] * 400
    used = {w.pid: sum(w.cpu_times()[:2]) - before[w.pid] for w in workers}
    assert all(seconds > 0.05 for seconds in used.values()), used
