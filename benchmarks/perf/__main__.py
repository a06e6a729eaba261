"""Entrepôt beside the limit, the Python floor and LiteLLM, in one run on this machine.

    make bench-perf        # or: .venv/bin/python -m benchmarks.perf [--seconds 5 --rounds 3]

One worker each, on loopback, in front of the same nginx mock upstream. For each target: requests/s
and p50/p99 latency at 1 and 16 connections (wrk, one thread; each cell the median of `--rounds`
runs, rounds interleaved so drift hits every target alike), and streaming time to first byte.
Then local decode through the gateway against llama-cpp-python directly, and Entrepôt's resident
memory and open files before and after `--soak` requests. Prints one table and whether each target
is met; absolute numbers depend on the machine, the ratios much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import httpx
import psutil
from benchmarks.perf.decode import DecodeResult, measure_decode
from benchmarks.perf.load import LoadResult, Target, first_byte_ms, wrk
from benchmarks.perf.mock import start_mock
from benchmarks.perf.servers import (
    LITELLM_VENV,
    checkout_source,
    start_entrepot,
    start_floor,
    start_litellm,
    targets,
)
from rich.console import Console
from rich.table import Table
from tests.conftest import Server

CONNECTIONS = (1, 16)
MB = 1024 * 1024


def check_answers(pairs: list[tuple[Target, Target]]) -> None:
    """Every target must really answer before its speed means anything."""
    for target, _ in pairs:
        response = httpx.post(
            target.url + "/v1/chat/completions",
            content=target.body(),
            headers={"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"},
        )
        response.raise_for_status()
        assert response.json()["choices"][0]["message"]["content"], target.name


def median_run(runs: list[LoadResult]) -> LoadResult:
    ordered = sorted(runs, key=lambda r: r.per_second)
    return ordered[len(ordered) // 2]


def load_all(
    pairs: list[tuple[Target, Target]],
    seconds: float,
    rounds: int,
    tmp: Path,
    processes: dict[str, psutil.Process],
) -> tuple[dict[tuple[str, int], LoadResult], dict[str, float]]:
    """The median run of each cell, and each server's CPU time per request at 16 connections
    (user + system, median over rounds): the cost that decides throughput on a busy machine."""
    runs: dict[tuple[str, int], list[LoadResult]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for connections in CONNECTIONS:
            for target, _stream in pairs:
                wrk(target, connections, 1, tmp)
                process = processes.get(target.name)
                before = sum(process.cpu_times()[:2]) if process else 0.0
                result = wrk(target, connections, seconds, tmp)
                if result.failures:
                    raise RuntimeError(f"{target.name}: {result.failures} failed requests")
                runs[(target.name, connections)].append(result)
                if process and connections == 16:
                    used = sum(process.cpu_times()[:2]) - before
                    cpu[target.name].append(used / result.requests * 1e6)
    cells = {cell: median_run(results) for cell, results in runs.items()}
    return cells, {name: statistics.median(values) for name, values in cpu.items()}


def soak(
    process: psutil.Process, target: Target, requests: int, per_second: float, tmp: Path
) -> dict[str, float]:
    """Resident memory and open files after a warm-up and after at least `requests` more
    requests at 16 connections (wrk runs for a time, so the run is sized from `per_second`)."""
    wrk(target, 16, 2, tmp)
    before_rss, before_fds = process.memory_info().rss, process.num_fds()
    done = failures = 0
    while done < requests:
        result = wrk(target, 16, min(60, (requests - done) / per_second + 1), tmp)
        done, failures = done + result.requests, failures + result.failures
    after_rss, after_fds = process.memory_info().rss, process.num_fds()
    return {
        "requests": done,
        "failures": failures,
        "rss_before_mb": before_rss / MB,
        "rss_after_mb": after_rss / MB,
        "rss_growth_mb": (after_rss - before_rss) / MB,
        "fds_before": before_fds,
        "fds_after": after_fds,
    }


def results_table(
    cells: dict[tuple[str, int], LoadResult],
    ttfb: dict[str, float],
    cpu: dict[str, float],
    names: list[str],
) -> Table:
    table = Table(title="chat completions through one worker, mock upstream on loopback")
    for column in ("target", "req/s @1", "p50 ms @1", "p99 ms @1", "req/s @16", "p50 ms @16"):
        table.add_column(column, justify="right" if "@" in column else "left")
    table.add_column("p99 ms @16", justify="right")
    table.add_column("stream TTFB ms", justify="right")
    table.add_column("server CPU µs/req @16", justify="right")
    for name in names:
        one, sixteen = cells[(name, 1)], cells[(name, 16)]
        table.add_row(
            name,
            f"{one.per_second:,.0f}",
            f"{one.p50_ms:.2f}",
            f"{one.p99_ms:.2f}",
            f"{sixteen.per_second:,.0f}",
            f"{sixteen.p50_ms:.2f}",
            f"{sixteen.p99_ms:.2f}",
            f"{ttfb[name]:.2f}",
            f"{cpu[name]:.0f}" if name in cpu else "",
        )
    return table


def verdicts(
    cells: dict[tuple[str, int], LoadResult],
    ttfb: dict[str, float],
    cpu: dict[str, float],
    decode: DecodeResult | None,
    memory: dict[str, float] | None,
) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, target, met) for each target the suite checks."""

    def added(name: str) -> float:
        return cells[(name, 1)].p50_ms - cells[("direct", 1)].p50_ms

    rps = cells[("entrepot", 16)].per_second
    floor_ratio = rps / cells[("floor", 16)].per_second
    latency_ratio = added("entrepot") / added("floor")
    rows = [
        ("req/s @16, Entrepôt / floor", f"{floor_ratio:.2f}", "≥ 0.60", floor_ratio >= 0.60),
        ("added p50 @1, Entrepôt / floor", f"{latency_ratio:.2f}", "≤ 1.50", latency_ratio <= 1.5),
    ]
    if ("litellm", 16) in cells:
        peer = rps / cells[("litellm", 16)].per_second
        rows.append(("req/s @16, Entrepôt / LiteLLM", f"{peer:.1f}", "≥ 30", peer >= 30))
    if ("baseline", 16) in cells and "baseline" in cpu:
        ratio = cpu["entrepot"] / cpu["baseline"]
        rows.append(
            ("server CPU per request, Entrepôt / baseline", f"{ratio:.3f}", "≤ 1.05", ratio <= 1.05)
        )
    stream_added = ttfb["entrepot"] - ttfb["direct"]
    floor_stream = ttfb["floor"] - ttfb["direct"]
    rows.append(
        (
            "stream TTFB added, Entrepôt / floor",
            f"{stream_added:.2f} / {floor_stream:.2f} ms",
            "report",
            None,
        )
    )
    if decode is not None:
        rows.append(
            (
                f"local decode tok/s, gateway / direct ({decode.threads} threads)",
                f"{decode.ratio:.3f} ({decode.gateway_tokens_per_second:.1f}"
                f" / {decode.direct_tokens_per_second:.1f})",
                "≥ 0.97",
                decode.ratio >= 0.97,
            )
        )
    if memory is not None:
        rows.append(
            (
                f"RSS growth over {memory['requests']:,.0f} requests",
                f"{memory['rss_growth_mb']:.1f} MB ({memory['rss_before_mb']:.0f} →"
                f" {memory['rss_after_mb']:.0f}; fds {memory['fds_before']:.0f} →"
                f" {memory['fds_after']:.0f})",
                "< 30 MB",
                memory["rss_growth_mb"] < 30 and not memory["failures"],
            )
        )
    return rows


def verdict_table(rows: list[tuple[str, str, str, bool | None]]) -> Table:
    table = Table("measure", "value", "target", "met", title="targets")
    for measure, value, target, met in rows:
        mark = "" if met is None else ("[green]yes[/]" if met else "[red]NO[/]")
        table.add_row(measure, value, target, mark)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf")
    parser.add_argument("--seconds", type=float, default=5, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is kept")
    parser.add_argument("--soak", type=int, default=100_000, help="requests for the memory check")
    parser.add_argument("--ttfb-requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-decode", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--baseline",
        metavar="REVISION",
        help="also load Entrepôt as of this git revision, as a baseline measured in the same run",
    )
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(width=132)
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-perf-"))
    mock = start_mock(tmp)
    servers: list[Server] = []
    try:
        floor = start_floor(tmp, mock.url)
        servers.append(floor)
        litellm = None
        if not args.no_litellm:
            if not (LITELLM_VENV / "bin" / "litellm").exists():
                raise SystemExit(f"LiteLLM is not installed in {LITELLM_VENV}: run make bench-perf")
            litellm = start_litellm(tmp, mock.url)
            servers.append(litellm)
        baseline = None
        if args.baseline:
            source = checkout_source(args.baseline, tmp)
            baseline = start_entrepot(tmp, mock.url, "baseline", source)
            servers.append(baseline[0])
        entrepot, key = start_entrepot(tmp, mock.url)
        servers.append(entrepot)
        pairs = targets(mock.url, floor, litellm, entrepot, key, baseline)
        check_answers(pairs)
        names = [target.name for target, _ in pairs]
        console.print(f"loading {', '.join(names)}: {args.rounds} × {args.seconds:g} s per cell")
        named = {"floor": floor, "entrepot": entrepot, **({"litellm": litellm} if litellm else {})}
        if baseline is not None:
            named["baseline"] = baseline[0]
        processes = {name: psutil.Process(server.process.pid) for name, server in named.items()}
        cells, cpu = load_all(pairs, args.seconds, args.rounds, tmp, processes)
        ttfb = {stream.name: first_byte_ms(stream, args.ttfb_requests) for _, stream in pairs}
        memory = None
        if args.soak:
            rate = cells[("entrepot", 16)].per_second
            memory = soak(processes["entrepot"], pairs[-1][0], args.soak, rate, tmp)
        for server in servers:
            server.stop()
        servers.clear()
        decode = None if args.no_decode else measure_decode(tmp, args.threads)
    finally:
        for server in servers:
            server.stop()
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    console.print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    console.print(results_table(cells, ttfb, cpu, names))
    rows = verdicts(cells, ttfb, cpu, decode, memory)
    console.print(verdict_table(rows))
    if args.json:
        report = {
            "cells": {
                f"{name}@{conns}": {**vars(r), "per_second": r.per_second}
                for (name, conns), r in cells.items()
            },
            "ttfb_ms": ttfb,
            "server_cpu_us_per_request": cpu,
            "decode": vars(decode) if decode else None,
            "memory": memory,
            "targets": [
                dict(zip(("measure", "value", "target", "met"), row, strict=True)) for row in rows
            ],
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
