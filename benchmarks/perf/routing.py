"""What a `good_enough` route's decision costs the gateway, against a plain alias.

    .venv/bin/python -m benchmarks.perf.routing [--seconds 5] [--rounds 3]

One Entrepôt worker in front of the nginx mock upstream, configured as the perf suite's hot path
(`servers.entrepot_config`) plus a cheaper alias `perf/cheap` on the same mock and a route
`perf/auto` (`good_enough`: candidate `perf/cheap`, reference `perf/echo`). Evidence that
`perf/cheap` clears the bar for task `perf` is published in the store before the server starts,
and the client key names `perf` as its default task, so every request really decides: it reads
the evidence, judges the candidate and routes to it, with the reference's two deployments as
fallback. Measured: the server's CPU time per request at 16 connections for the route and for
`perf/echo` asked directly (complete and streamed), interleaved round by round so drift hits
both alike, the median of `--rounds`. The target: within 1.05× the plain alias.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import psutil
from benchmarks.perf.load import Target
from benchmarks.perf.mock import start_mock
from benchmarks.perf.servers import PRICE, entrepot_config, start_entrepot
from benchmarks.perf.surfaces import CONNECTIONS, check, measure
from rich.console import Console
from rich.table import Table
from tests.conftest import ADMIN_KEY

from entrepot.config import Config, StoreConfig
from entrepot.routing.good_enough import configured_fingerprints
from entrepot.store.db import open_engine
from entrepot.store.evidence import Evidence, publish

TARGET_RATIO = 1.05
ROUTE = "perf/auto"
STREAM_ROUTE = "perf/auto-stream"
TASK = "perf"
CHEAP_PRICE = {**PRICE, "input_per_1m": "0.05", "output_per_1m": "0.20"}


def config(upstream: str) -> dict[str, Any]:
    """The suite's hot path plus a cheaper alias beside each of `perf/echo` and `perf/stream`
    (the mock streams on its own path), and a good_enough route over each pair."""
    base = entrepot_config(upstream)
    echo, stream = base["models"][0], base["models"][2]
    cheap = {**echo, "alias": "perf/cheap", "name": "perf-eu-cheap", "price": CHEAP_PRICE}
    cheap_stream = {
        **stream, "alias": "perf/cheap-stream", "name": "perf-eu-cheap-stream", "price": CHEAP_PRICE
    }  # fmt: skip

    def route(candidate: str, reference: str) -> dict[str, Any]:
        return {
            "strategy": "good_enough",
            "candidates": [candidate],
            "reference": reference,
            "min_quality": 0.95,
        }

    return {
        "models": [*base["models"], cheap, cheap_stream],
        "routes": {
            **base["routes"],
            ROUTE: route("perf/cheap", "perf/echo"),
            STREAM_ROUTE: route("perf/cheap-stream", "perf/stream"),
        },
    }


def publish_evidence(data_dir: Path, settings: dict[str, Any]) -> None:
    """A run's evidence as `bench --publish` would store it: the candidate clears the bar for
    task `perf`, and costs less per item than the reference."""
    fingerprints = configured_fingerprints(Config.model_validate(settings))
    now = dt.datetime.now(dt.UTC)

    def row(model: str, reference: str, low: float, cost: int) -> Evidence:
        return Evidence(
            f"ev_perf_{model.replace('/', '_')}", "perf-run", now, TASK, model, reference,
            200, 0.9, 0.86, 0.94, 1.0, low, 1.03, cost, "USD", PRICE["as_of"],
            fingerprints[model],
        )  # fmt: skip

    data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(StoreConfig(url=f"sqlite:///{data_dir / 'entrepot.db'}"))
    rows = [
        row("perf/cheap", "perf/echo", 0.97, 40_000),
        row("perf/echo", "perf/echo", 1.0, 300_000),
        row("perf/cheap-stream", "perf/stream", 0.97, 40_000),
        row("perf/stream", "perf/stream", 1.0, 300_000),
    ]
    publish(engine, rows)
    engine.dispose()


def route_key(url: str) -> str:
    """A key allowed only the route, with `perf` as its task: the same limits as `perf`'s."""
    created = httpx.post(
        url + "/admin/keys",
        json={
            "name": "perf-auto",
            "allowed_models": [ROUTE, STREAM_ROUTE],
            "default_task": TASK,
            "budget": {"amount": 1_000_000, "period": "month"},
            "requests_per_minute": 100_000_000,
            "tokens_per_minute": 1_000_000_000,
        },
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    created.raise_for_status()
    return str(created.json()["key"])


def routed_to(target: Target, stream: bool) -> str:
    headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
    response = httpx.post(target.url + target.path, content=target.body(stream), headers=headers)
    response.raise_for_status()
    return response.headers["x-entrepot-deployment"]


def table(cpu: dict[str, float]) -> tuple[Table, bool]:
    out = Table("request", "server CPU µs/req @16", "÷ plain alias", "target", "met")
    met_all = True
    for name, value in cpu.items():
        ratio = value / cpu["alias stream" if name.endswith("stream") else "alias"]
        met = ratio <= TARGET_RATIO
        met_all = met_all and met
        mark = "[green]yes[/]" if met else "[red]NO[/]"
        out.add_row(name, f"{value:.0f}", f"{ratio:.3f}", f"≤ {TARGET_RATIO}", mark)
    return out, met_all


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.routing")
    parser.add_argument("--seconds", type=float, default=5, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is kept")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(width=100)
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-routing-"))
    mock = start_mock(tmp)
    server = None
    try:
        settings = config(mock.url)
        publish_evidence(tmp / "entrepot-data", {**entrepot_config(mock.url), **settings})
        server, key = start_entrepot(tmp, mock.url, config=settings)
        auto = route_key(server.url)
        targets = [
            Target("alias", server.url, "perf/echo", key),
            Target("good_enough", server.url, ROUTE, auto),
            Target("alias stream", server.url, "perf/stream", key),
            Target("good_enough stream", server.url, STREAM_ROUTE, auto),
        ]
        for target in targets:
            check(target, target.name.endswith("stream"))
        for target, expected in (
            (targets[1], "perf-eu-cheap"),
            (targets[3], "perf-eu-cheap-stream"),
        ):
            chosen = routed_to(target, target.name.endswith("stream"))
            if chosen != expected:
                raise RuntimeError(f"{target.name} went to {chosen}, not to {expected}")
        console.print(f"loading {len(targets)} cases: {args.rounds} × {args.seconds:g} s each")
        process = psutil.Process(server.process.pid)
        cpu = measure(targets, process, args.seconds, args.rounds, tmp)
    finally:
        if server is not None:
            server.stop()
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result, met = table(cpu)
    console.print(f"server CPU per request at {CONNECTIONS} connections")
    console.print(result)
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
