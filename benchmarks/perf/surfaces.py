"""What a request costs the gateway in each wire format it speaks, against chat completions.

    make bench-surfaces    # or: .venv/bin/python -m benchmarks.perf.surfaces [--seconds 5]

One Entrepôt worker in front of the nginx mock upstream (an OpenAI-compatible server, so a
Responses or Messages request is translated into chat completions and its answer back). For the
same request as chat completions, OpenAI Responses (`store: false`, and with the default `store:
true`) and Anthropic Messages, complete and streamed: the server's CPU time per request at 16
connections (the median of `--rounds` runs, interleaved so drift hits every format alike), and
its ratio to chat completions measured in the same run. The target: within 1.2×.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import httpx
import psutil
from benchmarks.perf.load import SURFACES, Target, wrk
from benchmarks.perf.mock import start_mock
from benchmarks.perf.servers import start_entrepot
from rich.console import Console
from rich.table import Table

TARGET_RATIO = 1.2
CONNECTIONS = 16


def cases(url: str, key: str) -> list[Target]:
    """Every (format, streamed or not) pair; the streaming alias reaches the mock's SSE body."""
    found = []
    for surface in SURFACES:
        found.append(Target(surface, url, "perf/echo", key, surface))
        found.append(Target(f"{surface} stream", url, "perf/stream", key, surface))
    return found


def check(target: Target, stream: bool) -> None:
    """A format that fails would look very cheap: each must really answer first."""
    headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
    response = httpx.post(
        target.url + target.path, content=target.body(stream), headers=headers, timeout=30
    )
    response.raise_for_status()
    failed = (b'{"error":{', b'"type":"error"', b"response.failed")
    if not response.content or any(mark in response.content for mark in failed):
        raise RuntimeError(f"{target.name}: {response.text[:300]}")


def measure(
    targets: list[Target], process: psutil.Process, seconds: float, rounds: int, tmp: Path
) -> dict[str, float]:
    """Server CPU µs per request (user + system), the median over rounds, per target."""
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for target in targets:
            stream = target.name.endswith("stream")
            wrk(target, CONNECTIONS, 1, tmp, stream)
            before = sum(process.cpu_times()[:2])
            result = wrk(target, CONNECTIONS, seconds, tmp, stream)
            if result.failures:
                raise RuntimeError(f"{target.name}: {result.failures} failed requests")
            cpu[target.name].append((sum(process.cpu_times()[:2]) - before) / result.requests * 1e6)
    return {name: statistics.median(values) for name, values in cpu.items()}


def table(cpu: dict[str, float]) -> tuple[Table, bool]:
    out = Table("request", "server CPU µs/req @16", "÷ chat completions", "target", "met")
    met_all = True
    for name, value in cpu.items():
        base = cpu["chat stream" if name.endswith("stream") else "chat"]
        ratio = value / base
        met = ratio <= TARGET_RATIO
        met_all = met_all and met
        mark = "[green]yes[/]" if met else "[red]NO[/]"
        out.add_row(name, f"{value:.0f}", f"{ratio:.3f}", f"≤ {TARGET_RATIO}", mark)
    return out, met_all


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.surfaces")
    parser.add_argument("--seconds", type=float, default=5, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is kept")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(width=100)
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-surfaces-"))
    mock = start_mock(tmp)
    server = None
    try:
        server, key = start_entrepot(tmp, mock.url)
        targets = cases(server.url, key)
        for target in targets:
            check(target, target.name.endswith("stream"))
        console.print(f"loading {len(targets)} formats: {args.rounds} × {args.seconds:g} s each")
        process = psutil.Process(server.process.pid)
        cpu = measure(targets, process, args.seconds, args.rounds, tmp)
    finally:
        if server is not None:
            server.stop()
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result, met = table(cpu)
    console.print(result)
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
