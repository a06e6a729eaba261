"""Runs in tests take the real path: every model through the in-process gateway, as `entrepot
bench` calls it, never a provider made on the side."""

from __future__ import annotations

import asyncio
from typing import Any

from entrepot.bench.runner import BenchRunner, RunOptions
from entrepot.bench.schema import ItemResult, TaskItem
from entrepot.bench.through_gateway import InProcessGateway
from entrepot.config import Config


def run_through_gateway(
    config: Config,
    aliases: list[str],
    items: list[TaskItem],
    options: RunOptions,
    **runner: Any,
) -> list[ItemResult]:
    """One run of `items` on `aliases` through a gateway built from `config`, as `bench` runs
    them without `--key`. `runner` holds the runner's keyword options (say `on_result`)."""

    async def main() -> list[ItemResult]:
        async with InProcessGateway(config, aliases, "bench", None) as gateway:
            models = gateway.models(aliases)
            return await BenchRunner(models, items, options, **runner).run()

    return asyncio.run(main())
