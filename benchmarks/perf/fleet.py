"""Entrepôt on the fleet's backing servers against one process on its own, in one run.

    make bench-fleet       # or: .venv/bin/python -m benchmarks.perf.fleet [--seconds 5]

Four targets in front of the nginx mock upstream, loaded alike (wrk, one thread): the floor (a
bare forwarding app), Entrepôt with memory counters and the per-user SQLite ledger (one process,
the default), Entrepôt with Redis and PostgreSQL (`shared.backend: redis`, `store.url`: what
every replica of a fleet runs), and the same with `--workers 2`. Redis and PostgreSQL are private
servers started for the run (tests/backing.py). Each cell is the median of interleaved rounds.
The targets: Redis + PostgreSQL keeps ≥ 0.8 of the one-process throughput at 16 connections; p99
at 1 connection ≤ 1.5× the floor's in both modes; two workers ≥ 1.6× one worker.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.perf.load import LoadResult, Target, wrk
from benchmarks.perf.mock import start_mock
from benchmarks.perf.servers import UPSTREAM_KEY, start_entrepot, start_floor
from rich.console import Console
from rich.table import Table
from tests.backing import new_database, start_postgres, start_redis
from tests.conftest import Server

CONNECTIONS = (1, 16)


def median(runs: list[LoadResult]) -> LoadResult:
    return sorted(runs, key=lambda r: r.per_second)[len(runs) // 2]


def load(
    targets: list[Target], seconds: float, rounds: int, tmp: Path
) -> dict[tuple[str, int], LoadResult]:
    runs: dict[tuple[str, int], list[LoadResult]] = defaultdict(list)
    for _ in range(rounds):
        for connections in CONNECTIONS:
            for target in targets:
                wrk(target, connections, 1, tmp)
                result = wrk(target, connections, seconds, tmp)
                if result.failures:
                    raise RuntimeError(f"{target.name}: {result.failures} failed requests")
                runs[(target.name, connections)].append(result)
    return {cell: median(results) for cell, results in runs.items()}


def verdicts(cells: dict[tuple[str, int], LoadResult]) -> Table:
    def rps(name: str) -> float:
        return cells[(name, 16)].per_second

    def p99(name: str) -> float:
        return cells[(name, 1)].p99_ms

    rows = [
        ("req/s @16, Redis + PostgreSQL / memory + SQLite", rps("redis+pg") / rps("memory"), 0.8),
        (
            "req/s @16, 2 workers / 1 worker (Redis + PostgreSQL)",
            rps("redis+pg x2") / rps("redis+pg"),
            1.6,
        ),
    ]
    table = Table("measure", "value", "target", "met", title="targets")
    for measure, value, floor in rows:
        table.add_row(measure, f"{value:.2f}", f"≥ {floor}", "yes" if value >= floor else "NO")
    for name in ("memory", "redis+pg"):
        ratio = p99(name) / p99("floor")
        table.add_row(
            f"p99 @1, {name} / floor", f"{ratio:.2f}", "≤ 1.5", "yes" if ratio <= 1.5 else "NO"
        )
    return table


def results(cells: dict[tuple[str, int], LoadResult], names: list[str]) -> Table:
    table = Table("target", "req/s @1", "p50 ms @1", "p99 ms @1", "req/s @16", "p99 ms @16")
    for name in names:
        one, sixteen = cells[(name, 1)], cells[(name, 16)]
        table.add_row(
            name,
            f"{one.per_second:,.0f}",
            f"{one.p50_ms:.2f}",
            f"{one.p99_ms:.2f}",
            f"{sixteen.per_second:,.0f}",
            f"{sixteen.p99_ms:.2f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.fleet")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(width=100)
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-fleet-"))
    mock = start_mock(tmp)
    backing = [start_redis(tmp / "redis"), start_postgres()]
    servers: list[Server] = []
    try:
        redis, postgres = backing
        floor = start_floor(tmp, mock.url)
        servers.append(floor)
        targets = [Target("floor", floor.url, "perf-model", UPSTREAM_KEY)]
        env = {"ENTREPOT_REDIS_URL": redis.url}

        def shared() -> dict[str, object]:
            """Redis, and a database of its own on the PostgreSQL server."""
            return {"shared": {"backend": "redis"}, "store": {"url": new_database(postgres.url)}}

        for name, config, options in (
            ("memory", {}, []),
            ("redis+pg", shared(), []),
            ("redis+pg x2", shared(), ["--workers", "2"]),
        ):
            server, key = start_entrepot(
                tmp,
                mock.url,
                name.replace("+", "-").replace(" ", ""),
                config=config,
                env=env,
                options=options,
            )
            servers.append(server)
            targets.append(Target(name, server.url, "perf/echo", key))
        console.print(
            f"loading {len(targets)} targets: {args.rounds} × {args.seconds:g} s per cell"
        )
        cells = load(targets, args.seconds, args.rounds, tmp)
    finally:
        for server in servers:
            server.stop()
        for server in backing:
            server.stop()
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(results(cells, [t.name for t in targets]))
    console.print(verdicts(cells))


if __name__ == "__main__":
    main()
