"""How a run shares out its calls, and what it measures: concurrency is per model (a stalled model
holds up no other), a local model is sent no more requests than it serves at once (the rest wait
in the runner, counted as queueing, not as the model's latency or busy time), and its hardware
cost is the same live and re-reported from the cache. Ctrl-C says what was kept and how to
resume."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from entrepot.bench.runner import BenchRunner, RunOptions
from entrepot.bench.schema import ItemResult, TaskItem
from entrepot.bench.through_gateway import InProcessGateway
from entrepot.config import Config, ModelConfig
from tests.bench.through import run_through_gateway
from tests.conftest import LOCAL, ROOT, UPSTREAM_KEY, Server, fake_model

GUARD_SECONDS = 120  # only against a hang: no assertion depends on how long anything takes


def _items(count: int) -> list[TaskItem]:
    return [
        TaskItem(id=f"i{n}", prompt=f"Name colour number {n}.", expected="x") for n in range(count)
    ]


def test_a_stalled_model_holds_up_no_other(fake_openai: Server, tmp_path: Path) -> None:
    # `hang` answers only after 30 s; one request in flight per model.
    patient = {"connect": 5, "first_token": 600, "total": 600}
    config = Config(
        models=[
            ModelConfig.model_validate(
                fake_model(fake_openai, "stalled", "hang", timeouts=patient)
            ),
            ModelConfig.model_validate(fake_model(fake_openai, "fast", "echo-model")),
        ]
    )
    fast: list[ItemResult] = []
    all_fast = asyncio.Event()

    def on_result(result: ItemResult) -> None:
        if result.model == "fast":
            fast.append(result)
            if len(fast) == 4:
                all_fast.set()

    async def main() -> None:
        aliases = ["stalled", "fast"]
        async with InProcessGateway(config, aliases, "bench", None) as gateway:
            runner = BenchRunner(
                gateway.models(aliases),
                _items(4),
                RunOptions(out=tmp_path, concurrency=1, retries=0),
                on_result=on_result,
            )
            run = asyncio.create_task(runner.run())
            try:
                await asyncio.wait_for(all_fast.wait(), GUARD_SECONDS)
            finally:
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run

    asyncio.run(main())
    assert [r.error for r in fast] == [None] * 4


def test_a_local_model_is_measured_without_its_queue(tmp_path: Path) -> None:
    local = ModelConfig.model_validate(
        {
            "alias": LOCAL,
            "provider": "llama_cpp",
            "target": "bundled:smollm2-135m-instruct",
            "hardware_cost_per_hour": "0.36",
            "local": {"n_threads": 2, "parallel": 1},
        }
    )
    config = Config(models=[local])
    options = RunOptions(out=tmp_path, concurrency=3, max_tokens=8)
    live = run_through_gateway(config, [LOCAL], _items(3), options)
    assert all(r.error is None and r.started_at is not None for r in live)
    # One request at a time at a model that serves one: the spans of its work do not overlap.
    spans = sorted((r.started_at or 0, (r.started_at or 0) + r.latency_ms / 1000) for r in live)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all(r.cost_nanos for r in live)

    again = run_through_gateway(config, [LOCAL], _items(3), options)
    assert all(r.cached for r in again)
    assert [r.cost_nanos for r in again] == [r.cost_nanos for r in live]
    assert [(r.latency_ms, r.queue_ms) for r in again] == [(r.latency_ms, r.queue_ms) for r in live]


def test_a_remote_model_is_measured_without_the_gateways_queue(
    fake_openai: Server, tmp_path: Path
) -> None:
    """A deployment the gateway sends one request at a time (`max_concurrency: 1`): the run
    holds the others back itself, so their wait is queueing, not the model's latency."""
    one_at_a_time = fake_model(fake_openai, "single", "sleep-250", max_concurrency=1)
    config = Config(models=[ModelConfig.model_validate(one_at_a_time)])
    options = RunOptions(out=tmp_path, concurrency=3, max_tokens=8)
    results = run_through_gateway(config, ["single"], _items(3), options)
    assert all(r.error is None and r.started_at is not None for r in results)
    spans = sorted((r.started_at or 0, (r.started_at or 0) + r.latency_ms / 1000) for r in results)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert sum(1 for r in results if r.queue_ms > 0) >= 2


def _write_run(tmp_path: Path, fake: Server, items: int) -> tuple[Path, Path]:
    config = tmp_path / "entrepot.yaml"
    price = {"input_per_1m": "1", "output_per_1m": "1", "as_of": "2026-11-01"}
    model = fake_model(fake, "slow", "sleep-250", price=price)
    config.write_bytes(orjson.dumps({"models": [model]}))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_bytes(
        b"\n".join(orjson.dumps(i.model_dump(exclude_none=True)) for i in _items(items))
    )
    return config, tasks


def _answers_in(out: Path) -> int:
    path = out / "results.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_ctrl_c_says_what_was_kept_and_how_to_resume(fake_openai: Server, tmp_path: Path) -> None:
    config, tasks = _write_run(tmp_path, fake_openai, 16)
    out = tmp_path / "out"
    env = {**os.environ, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY, "COLUMNS": "300"}
    args = ["bench", str(tasks), "--models", "slow", "--config", str(config)]
    args += ["--out", str(out), "--concurrency", "1", "--fresh"]
    process = subprocess.Popen(
        [sys.executable, "-m", "entrepot", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + GUARD_SECONDS
    while _answers_in(out) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=GUARD_SECONDS)[0].decode()
    assert process.returncode == 130, output
    kept = _answers_in(out)
    assert 2 <= kept < 16
    assert f"interrupted: {kept} answers kept in {out}." in output
    command = output.split("Resume (asking only the rest) with:")[1].strip().splitlines()[0]
    assert command.startswith("python -m entrepot bench ") and "--fresh" not in command

    resumed = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD_SECONDS,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = re.search(r"answers: (\d+) reused from earlier runs, (\d+) asked", resumed.stdout)
    assert summary is not None, resumed.stdout
    assert (int(summary[1]), int(summary[2])) == (kept, 16 - kept)


def test_a_failed_generation_is_not_asked_again_but_a_rate_limit_is(
    tmp_path: Path, fake_openai: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream failure may have followed a whole generation: the router already moved on to
    the next deployment, and the run does not send the item to the same one again. A 429 was
    turned away before anything was generated, so the run retries it."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    config = Config(
        models=[
            ModelConfig.model_validate(fake_model(fake_openai, "failing", "fail-500")),
            ModelConfig.model_validate(fake_model(fake_openai, "limited", "rate-limited")),
        ]
    )
    before = {m: _received(fake_openai, m) for m in ("fail-500", "rate-limited")}
    options = RunOptions(out=tmp_path, concurrency=1, retries=2, backoff_seconds=0.01)
    results = run_through_gateway(config, ["failing", "limited"], _items(2), options)
    assert all(r.error for r in results)
    assert _received(fake_openai, "fail-500") - before["fail-500"] == 2  # once per item
    # retried (until the deployment's circuit opens after three 429s: then no call is made)
    assert _received(fake_openai, "rate-limited") - before["rate-limited"] > 2


def _received(fake: Server, model: str) -> int:
    count: int = httpx.get(f"{fake.url}/received/{model}").json()
    return count
