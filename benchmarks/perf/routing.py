"""What a `good_enough` route's decision costs the gateway, against a plain alias.

    .venv/bin/python -m benchmarks.perf.routing [--seconds 5] [--rounds 3]

One Entrepôt worker in front of the nginx mock upstream, configured as the perf suite's hot path
(`servers.entrepot_config`) plus a cheaper alias `perf/cheap` on the same mock and a route
`perf/auto` (`good_enough`: candidate `perf/cheap`, reference `perf/echo`). Evidence that
`perf/cheap` clears the bar for task `perf` is published in the store before the server starts,
and the client key names `perf` as its default task, so every request really decides: it reads
the evidence, judges the candidate and routes to it, with the reference's two deployments as
fallback. The same for streams, over `perf/stream`.

Measured: the server's CPU time per request at 16 connections (complete and streamed),
interleaved round by round so drift hits every case alike, the median of `--rounds`, for

- the route;
- a plain alias over three deployments, `perf/trio`: the same work but for the decision (policy
  checks and budget estimates for a choice and a two-deployment fallback) — the target is the
  route within 1.05× of it;
- `perf/echo` asked directly (two deployments), for what a route costs over the alias it
  replaces, fallback included.

One key asks for all of them, with the same limits and default task.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import shutil
import signal
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from benchmarks.perf.load import SURFACES, Target
from benchmarks.perf.mock import start_mock
from benchmarks.perf.servers import PRICE, entrepot_config, start_entrepot
from benchmarks.perf.surfaces import check, measure
from rich.console import Console
from rich.table import Table
from tests.conftest import ADMIN_KEY

from entrepot.config import Config, StoreConfig
from entrepot.ledger.billing import estimated_tokens, worst_case_costs
from entrepot.policy.detector import PiiDetector
from entrepot.policy.egress import EgressPolicy
from entrepot.policy.eligibility import eligible_deployments
from entrepot.routing.good_enough import EvidenceBoard, configured_fingerprints
from entrepot.routing.table import RoutingTable
from entrepot.store.db import open_engine
from entrepot.store.evidence import Evidence, publish
from entrepot.types import JSON

TARGET_RATIO = 1.05
ROUTE = "perf/auto"
STREAM_ROUTE = "perf/auto-stream"
TASK = "perf"
# Case name → model asked, complete and streamed.
ALIASES = {"alias": "perf/echo", "alias ×3": "perf/trio", "good_enough": ROUTE}
STREAMED = {
    "alias stream": "perf/stream",
    "alias ×3 stream": "perf/trio-stream",
    "good_enough stream": STREAM_ROUTE,
}
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

    trio = [{**echo, "alias": "perf/trio", "name": f"perf-trio-{i}"} for i in range(3)]
    trio_stream = [
        {**stream, "alias": "perf/trio-stream", "name": f"perf-trio-stream-{i}"} for i in range(3)
    ]
    return {
        "models": [*base["models"], cheap, cheap_stream, *trio, *trio_stream],
        "routes": {
            **base["routes"],
            ROUTE: route("perf/cheap", "perf/echo"),
            STREAM_ROUTE: route("perf/cheap-stream", "perf/stream"),
        },
    }


def full_config(upstream: str) -> dict[str, Any]:
    """The served configuration: `start_entrepot` lays `config` over the suite's."""
    return {**entrepot_config(upstream), **config(upstream)}


def evidence(settings: dict[str, Any]) -> list[Evidence]:
    """A run's evidence as `bench --publish` would store it: each candidate clears the bar for
    task `perf`, and costs less per item than its reference."""
    fingerprints = configured_fingerprints(Config.model_validate(settings))
    now = dt.datetime.now(dt.UTC)

    def row(model: str, reference: str, low: float, cost: int) -> Evidence:
        return Evidence(
            f"ev_perf_{model.replace('/', '_')}", "perf-run", now, TASK, model, reference,
            200, 0.9, 0.86, 0.94, 1.0, low, 1.03, cost, "USD", PRICE["as_of"],
            fingerprints[model],
        )  # fmt: skip

    return [
        row("perf/cheap", "perf/echo", 0.97, 40_000),
        row("perf/echo", "perf/echo", 1.0, 300_000),
        row("perf/cheap-stream", "perf/stream", 0.97, 40_000),
        row("perf/stream", "perf/stream", 1.0, 300_000),
    ]


def publish_evidence(data_dir: Path, settings: dict[str, Any]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(StoreConfig(url=f"sqlite:///{data_dir / 'entrepot.db'}"))
    publish(engine, evidence(settings))
    engine.dispose()


def in_process(settings: dict[str, Any]) -> dict[str, float]:
    """The request path's routing steps alone, in this process, in µs per request (the best of
    15 repeats, so another process's load does not count): policy and eligibility with the
    budget's estimates for each case's model, and the route's decision by itself."""
    config = Config.model_validate(settings)
    rows = evidence(settings)
    board = EvidenceBoard(lambda: {row.key: row for row in rows}, refresh_seconds=3600)
    board.load_now()
    table = RoutingTable(config, board)
    detector, egress = (
        PiiDetector(config.policy.detector),
        EgressPolicy(config.policy, config.teams),
    )
    body: JSON = {"model": "", **SURFACES["chat"][1]}
    size = len(orjson.dumps(body))

    def route(model: str) -> None:
        eligible = eligible_deployments(
            table=table, detector=detector, egress=egress, key=None, alias=model, body=body,
            class_header=None, offline=False, reroute_alias=None, task=TASK,
        )  # fmt: skip
        estimated_tokens(size, body, eligible.deployments)
        worst_case_costs(size, body, eligible.deployments)

    def best(step: Callable[[], object], number: int = 5000) -> float:
        return min(timeit.repeat(step, number=number, repeat=15)) / number * 1e6

    cases: dict[str, Callable[[], object]] = {
        f"route {name}": functools.partial(route, model) for name, model in ALIASES.items()
    }
    cases["decision alone (RoutingTable.choose)"] = functools.partial(table.choose, ROUTE, TASK)
    return {name: best(step) for name, step in cases.items()}


def route_key(url: str) -> str:
    """The key every case is asked with, `perf` as its task, limits as the suite's key."""
    created = httpx.post(
        url + "/admin/keys",
        json={
            "name": "perf-auto",
            "allowed_models": [*ALIASES.values(), *STREAMED.values()],
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
    out = Table(
        "request", "CPU µs/req @16", "÷ alias ×3", "÷ perf/echo", "target", "met",
        title="server CPU per request: a good_enough route against plain aliases",
    )  # fmt: skip
    met_all = True
    for name, value in cpu.items():
        suffix = " stream" if name.endswith("stream") else ""
        same_work = value / cpu["alias ×3" + suffix]
        direct = value / cpu["alias" + suffix]
        if not name.startswith("good_enough"):
            out.add_row(name, f"{value:.0f}", f"{same_work:.3f}", f"{direct:.3f}", "", "")
            continue
        met = same_work <= TARGET_RATIO
        met_all = met_all and met
        mark = "[green]yes[/]" if met else "[red]NO[/]"
        out.add_row(
            name, f"{value:.0f}", f"{same_work:.3f}", f"{direct:.3f}", f"≤ {TARGET_RATIO}", mark
        )
    return out, met_all


def steps_table(settings: dict[str, Any]) -> Table:
    steps = Table("in process: routing steps", "µs/request (best of 15)")
    for name, value in in_process(settings).items():
        steps.add_row(name, f"{value:.1f}")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.routing")
    parser.add_argument("--seconds", type=float, default=5, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is kept")
    parser.add_argument(
        "--in-process", action="store_true", help="only the routing steps, without servers"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(width=100)
    if args.in_process:
        console.print(steps_table(full_config("http://127.0.0.1:9")))
        return
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-routing-"))
    mock = start_mock(tmp)
    server = None
    try:
        settings = config(mock.url)
        publish_evidence(tmp / "entrepot-data", full_config(mock.url))
        server, _ = start_entrepot(tmp, mock.url, config=settings)
        key = route_key(server.url)
        targets = [
            Target(name, server.url, model, key)
            for name, model in (*ALIASES.items(), *STREAMED.items())
        ]
        for target in targets:
            check(target, target.name.endswith("stream"))
        chosen_by = {ROUTE: "perf-eu-cheap", STREAM_ROUTE: "perf-eu-cheap-stream"}
        for target in targets:
            expected = chosen_by.get(target.model)
            if expected is None:
                continue
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
    console.print(result)
    console.print(steps_table(full_config(mock.url)))
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
