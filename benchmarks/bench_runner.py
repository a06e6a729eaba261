"""Bench runner efficiency: items per second against an upstream with a fixed 100 ms latency at
concurrency 32, compared with the limit that latency allows (32 / 0.1 s = 320 items/s).

    .venv/bin/python benchmarks/bench_runner.py [--items 960]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import UPSTREAM_KEY, start_fake

from entrepot.bench.runner import BenchRunner, RunOptions, bench_models
from entrepot.bench.schema import TaskItem
from entrepot.config import Config, ModelConfig

LATENCY_S = 0.1
CONCURRENCY = 32


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=960)
    args = parser.parse_args()
    os.environ["FAKE_UPSTREAM_KEY"] = UPSTREAM_KEY
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-bench-runner-"))
    fake = start_fake(tmp, "openai_upstream", "/v1/models")
    try:
        model = ModelConfig(
            alias="fixed-latency",
            provider="openai_compatible",
            target=f"sleep-{int(LATENCY_S * 1000)}",
            base_url=fake.url + "/v1",
            api_key_env="FAKE_UPSTREAM_KEY",
        )
        items = [
            TaskItem(id=str(i), prompt=f"item {i}", expected=f"echo: item {i}")
            for i in range(args.items)
        ]
        runner = BenchRunner(
            bench_models(Config(models=[model]), ["fixed-latency"]),
            items,
            RunOptions(out=tmp / "run", concurrency=CONCURRENCY),
        )
        started = time.perf_counter()
        results = asyncio.run(runner.run())
        elapsed = time.perf_counter() - started
    finally:
        fake.stop()
    assert all(r.score == 1.0 for r in results), "every echo should grade correct"
    limit = CONCURRENCY / LATENCY_S
    rate = len(results) / elapsed
    table = Table("items", "concurrency", "upstream latency", "items/s", "limit", "ratio", "target")
    ratio = rate / limit
    table.add_row(
        str(len(results)),
        str(CONCURRENCY),
        f"{LATENCY_S * 1000:.0f} ms",
        f"{rate:.0f}",
        f"{limit:.0f}",
        f"{ratio:.2f}",
        "met" if ratio >= 0.9 else "NOT met (≥ 0.90)",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
