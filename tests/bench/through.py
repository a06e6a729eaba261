"""Runs in tests take the real path: every model through the in-process gateway, as `entrepot
bench` calls it, never a provider made on the side. Also what the bench's and the audit's tests
share about their models on the fake upstream: its key, a model without one, and a config file
for the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from entrepot.bench.runner import BenchRunner, RunOptions
from entrepot.bench.schema import ItemResult, TaskItem
from entrepot.bench.through_gateway import InProcessGateway
from entrepot.config import Config, ModelConfig
from tests.conftest import UPSTREAM_KEY, Server, fake_model

# The variable a keyless model takes its key from: set (a run checks that first) to a key the
# upstream does not know, so its every call fails (401).
WRONG_KEY_ENV = "WRONG_BENCH_KEY"


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models on the fake upstream are called with its key; a keyless model with a wrong one."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv(WRONG_KEY_ENV, "not-the-upstream-key")


def keyless_model(fake: Server) -> ModelConfig:
    """`keyless` on the fake's echo model, without its key: the upstream rejects every call."""
    return ModelConfig.model_validate(
        fake_model(fake, "keyless", "echo-model", api_key_env=WRONG_KEY_ENV)
    )


def write_config(config: Config, path: Path) -> Path:
    """`config`'s models as a file for the CLI, without circuit breaking in the gateway the run
    calls through, so each failure is reported as it is."""
    models = [m.model_dump(mode="json", exclude_none=True) for m in config.models]
    path.write_bytes(orjson.dumps({"models": models, "breaker": {"failure_threshold": 1000}}))
    return path


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
