"""The upstream call alone: CPU time per chat completion POST through Entrepôt's connection pool
and through an aiohttp session (the client the Python floor uses), against the same nginx mock,
16 calls in flight, interleaved rounds. Run with nginx installed (`make bench-perf` installs it):

    .venv/bin/python benchmarks/upstream_client.py [--calls 4000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.perf.mock import start_mock

from entrepot.providers.connection import ConnectionPool

BODY = {"model": "perf-model", "messages": [{"role": "user", "content": "Say hello"}]}
IN_FLIGHT = 16
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer perf-upstream-key"}

Call = Callable[[], Awaitable[object]]


async def cpu_per_call(call: Call, calls: int) -> float:
    """Microseconds of this process's CPU per call, with IN_FLIGHT calls running at once."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(worker(20) for _ in range(IN_FLIGHT)))
    started = time.process_time()
    await asyncio.gather(*(worker(calls // IN_FLIGHT) for _ in range(IN_FLIGHT)))
    return (time.process_time() - started) / (calls // IN_FLIGHT * IN_FLIGHT) * 1e6


async def compare(base_url: str, calls: int, rounds: int) -> dict[str, list[float]]:
    pool = ConnectionPool(
        "perf", base_url, HEADERS, limit=256, connect_timeout=10, total_timeout=60
    )
    session = aiohttp.ClientSession(
        headers=HEADERS,
        connector=aiohttp.TCPConnector(limit=256),
        skip_auto_headers=("User-Agent",),
    )

    async def through_pool() -> object:
        response = await pool.request("POST", "/chat/completions", orjson.dumps(BODY))
        return orjson.loads(await response.read())

    async def through_aiohttp() -> object:
        url = base_url + "/chat/completions"
        async with session.post(url, data=orjson.dumps(BODY)) as response:
            return orjson.loads(await response.read())

    results: dict[str, list[float]] = {"connection pool": [], "aiohttp": []}
    try:
        for _ in range(rounds):
            results["connection pool"].append(await cpu_per_call(through_pool, calls))
            results["aiohttp"].append(await cpu_per_call(through_aiohttp, calls))
    finally:
        await pool.close()
        await session.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    mock = start_mock(Path(tempfile.mkdtemp(prefix="entrepot-upstream-")))
    try:
        results = uvloop.run(compare(mock.url + "/v1", args.calls, args.rounds))
    finally:
        mock.stop()
    medians = {name: statistics.median(values) for name, values in results.items()}
    table = Table(title=f"one upstream POST, {IN_FLIGHT} in flight, median of {args.rounds} rounds")
    table.add_column("client")
    table.add_column("CPU µs per call", justify="right")
    table.add_column("rounds", justify="right")
    for name, median in medians.items():
        table.add_row(name, f"{median:.1f}", ", ".join(f"{v:.0f}" for v in results[name]))
    Console().print(table)
    ratio = medians["connection pool"] / medians["aiohttp"]
    Console().print(f"connection pool / aiohttp: {ratio:.2f} of the CPU per call")


if __name__ == "__main__":
    main()
