"""What a limited request's two Redis calls (admission, settlement) cost the gateway, per client.

    .venv/bin/python -m benchmarks.redis_calls [--pairs 20000 --concurrency 16 --rounds 3]

N coroutines each run admit then settle (a rate window and a budget, as a key with both has)
against a private Redis (tests/backing.py), for each candidate in turn, rounds interleaved. For
each: pairs per second, the client's CPU per pair (the process's CPU time, which is what the
gateway's interpreter pays) and Redis's CPU per pair (the server process's, from psutil). The
candidates:
- `redis-py`: both scripts through redis-py's asyncio client (a pool of connections).
- `redis-py, settle batched`: admission through redis-py; settlements queued and sent in one
  pipeline when the loop is next idle (what batching settlements would save).
- `wire`: both through `entrepot.store.redis_wire` (one connection, pipelined, hiredis), as
  `RedisCounters` does now.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psutil
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table
from tests.backing import start_redis

from entrepot.config import SharedConfig
from entrepot.limits.counters import Ask, BudgetAsk, BudgetSettlement, Settlement, WindowAsk
from entrepot.limits.redis_counters import RedisCounters
from entrepot.limits.redis_scripts import SETTLE
from entrepot.store.redis import connect

CENT = 10_000_000
URL_ENV = "ENTREPOT_BENCH_REDIS_URL"


def ask(name: str, rid: str) -> Ask:
    return Ask(
        rid,
        (WindowAsk(f"{name}:rpm", 1, 10**9, 60.0),),
        (BudgetAsk(f"{name}:budget", CENT, 10**18),),
        600.0,
    )


def settlement(name: str, rid: str) -> Settlement:
    return Settlement(rid, (BudgetSettlement(f"{name}:budget", CENT, CENT // 2),), (), 0, 60.0, 0)


class BatchedSettle:
    """Admission as usual; settlements sent together, once per turn of the loop, in one
    redis-py pipeline (prototype of candidate (a))."""

    def __init__(self, client: Redis, counters: RedisCounters) -> None:
        self.client = client
        self.counters = counters
        self.settle = client.register_script(SETTLE)
        self.queued: list[Settlement] = []
        self.flushes: set[asyncio.Task[None]] = set()

    async def pair(self, a: Ask, s: Settlement) -> None:
        await self.counters.admit(a)
        if not self.queued:
            asyncio.get_running_loop().call_soon(self._start)
        self.queued.append(s)

    def _start(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self.flushes.add(task)
        task.add_done_callback(self.flushes.discard)

    async def _flush(self) -> None:
        batch, self.queued = self.queued, []
        pipe = self.client.pipeline(transaction=False)
        prefix = self.counters.prefix
        for s in batch:
            name, _, actual = s.budgets[0]
            keys = [f"{prefix}b:{name}", f"{prefix}x:{name}"]
            args = [s.request_id, 0, 1, 0, 60_000_000, 1, actual, 1, 0]
            await self.settle(keys=keys, args=args, client=pipe)
        await pipe.execute()

    async def drain(self) -> None:
        while self.flushes:
            await asyncio.gather(*self.flushes)


async def candidate(kind: str, url: str, pairs: int, concurrency: int) -> tuple[float, float]:
    """Pairs per second and client CPU (µs) per pair."""
    os.environ[URL_ENV] = url
    client = connect(SharedConfig(backend="redis", redis_url_env=URL_ENV))  # as the gateway's
    counters = RedisCounters(client, prefix=f"bench:{uuid.uuid4().hex}:")
    await counters.seed("key:1:budget", 0)
    batched = BatchedSettle(client, counters)
    if kind != "wire":
        counters._wire = None  # through redis-py, as before the lean connection

    async def both(a: Ask, s: Settlement) -> None:
        await counters.admit(a)
        await counters.settle(s)

    run = batched.pair if kind == "redis-py, settle batched" else both

    async def worker(count: int) -> None:
        for _ in range(count):
            rid = uuid.uuid4().hex
            await run(ask("key:1", rid), settlement("key:1", rid))

    await worker(50)  # warm: connections open, scripts loaded
    await batched.drain()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(pairs // concurrency) for _ in range(concurrency)))
    await batched.drain()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await counters.close()
    await client.aclose()
    return pairs / wall, cpu / pairs * 1e6


CANDIDATES = ("redis-py", "redis-py, settle batched", "wire")


async def measure(url: str, server: psutil.Process, args: argparse.Namespace) -> Table:
    runs: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for _ in range(args.rounds):
        for kind in CANDIDATES:
            before = sum(server.cpu_times()[:2])
            rate, client_us = await candidate(kind, url, args.pairs, args.concurrency)
            redis_us = (sum(server.cpu_times()[:2]) - before) / args.pairs * 1e6
            runs[kind].append((rate, client_us, redis_us))
    table = Table(title=f"admit + settle, {args.concurrency} concurrent, {args.pairs} pairs")
    for column in (
        "candidate",
        "pairs/s",
        "client CPU µs/pair",
        "Redis CPU µs/pair",
        "vs redis-py",
    ):
        table.add_column(column)
    base = statistics.median(r[1] for r in runs[CANDIDATES[0]])
    for kind in CANDIDATES:
        rate, client_us, redis_us = (statistics.median(r[i] for r in runs[kind]) for i in range(3))
        table.add_row(
            kind, f"{rate:,.0f}", f"{client_us:.0f}", f"{redis_us:.0f}", f"{client_us / base:.2f}"
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backing = start_redis(Path(tempfile.mkdtemp(prefix="entrepot-bench-redis-")))
    try:
        table = asyncio.run(measure(backing.url, psutil.Process(backing.process.pid), args))
    finally:
        backing.stop()
    Console().print(table)


if __name__ == "__main__":
    main()
