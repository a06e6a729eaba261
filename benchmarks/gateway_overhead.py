"""Gateway overhead against its own upstream, measured in one run on loopback.

Starts the deterministic fake upstream and an Entrepôt in front of it (client key required, ledger
on), then drives both with the same aiohttp load generator at 1 and 16 connections. Prints
requests/s, p50/p99 latency and the ratio gateway/direct: absolute numbers vary with the machine,
ratios much less. Bounded: a fixed number of requests per cell, loopback only.

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import (
    ADMIN_KEY,
    UPSTREAM_KEY,
    start_fake,
    start_gateway,
)

BODY = {"model": "", "messages": [{"role": "user", "content": "hello there"}]}


async def drive(url: str, model: str, key: str, connections: int, total: int) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    payload = {**BODY, "model": model}
    remaining = total
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections), headers=headers
    ) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                async with session.post(url, json=payload) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies


def measure(
    url: str, model: str, key: str, connections: int, total: int
) -> tuple[float, float, float]:
    asyncio.run(drive(url, model, key, connections, min(total // 10, 200)))
    started = time.perf_counter()
    latencies = asyncio.run(drive(url, model, key, connections, total))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return total / elapsed, quantiles[49] * 1000, quantiles[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-bench-"))
    fake = start_fake(tmp, "openai_upstream", "/v1/models")
    config = {
        "server": {"require_client_keys": True},
        "models": [
            {
                "alias": "bench/echo",
                "provider": "openai_compatible",
                "target": "echo-model",
                "base_url": fake.url + "/v1",
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "price": {"input_per_1m": 1, "output_per_1m": 2, "as_of": "2026-11-01"},
            }
        ],
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    gateway = start_gateway(tmp, "gateway", config, env)
    try:
        created = httpx.post(
            gateway.url + "/admin/keys",
            json={"name": "bench"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        client_key = created.json()["key"]
        table = Table("connections", "target", "req/s", "p50 ms", "p99 ms", "gateway/direct req/s")
        for connections in (1, 16):
            direct = measure(
                fake.url + "/v1/chat/completions",
                "echo-model",
                UPSTREAM_KEY,
                connections,
                args.requests,
            )
            through = measure(
                gateway.url + "/v1/chat/completions",
                "bench/echo",
                client_key,
                connections,
                args.requests,
            )
            table.add_row(
                str(connections),
                "direct",
                f"{direct[0]:.0f}",
                f"{direct[1]:.2f}",
                f"{direct[2]:.2f}",
                "",
            )
            table.add_row(
                "",
                "entrepot",
                f"{through[0]:.0f}",
                f"{through[1]:.2f}",
                f"{through[2]:.2f}",
                f"{through[0] / direct[0]:.2f}",
            )
        Console().print(table)
    finally:
        gateway.stop()
        fake.stop()


if __name__ == "__main__":
    main()
