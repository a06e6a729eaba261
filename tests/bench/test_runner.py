"""The bench runner against a deterministic fake upstream whose answers are known (so scores and
costs can be computed by hand), the persistent cache, resumption, and one built-in pack end to
end on the bundled local model."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console

from entrepot.bench.runner import RunOptions
from entrepot.bench.schema import ItemResult, TaskItem
from entrepot.bench.session import BenchRequest, run_bench
from entrepot.config import Config, ModelConfig
from tests.bench.through import run_through_gateway
from tests.conftest import LOCAL, Server

# $2 per million input tokens, $8 per million output tokens: a word costs 2,000 / 8,000 nanos.
PRICE = {"input_per_1m": "2", "output_per_1m": "8", "as_of": "2026-11-01"}


def _config(fake: Server) -> Config:
    def remote(alias: str, target: str, price: dict[str, str]) -> ModelConfig:
        return ModelConfig.model_validate(
            {
                "alias": alias,
                "provider": "openai_compatible",
                "target": target,
                "base_url": fake.url + "/v1",
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "price": price,
            }
        )

    cheap = {**PRICE, "input_per_1m": "1", "output_per_1m": "1"}
    return Config(
        models=[
            remote("big", "echo-model", PRICE),
            remote("small", "echo-model", cheap),
            ModelConfig(alias=LOCAL, provider="llama_cpp", target="bundled:smollm2-135m-instruct"),
        ]
    )


def _items() -> list[TaskItem]:
    # The fake answers "echo: <prompt>", so the first three are right for every model and the
    # last is wrong: a score of exactly 0.75.
    raw: list[dict[str, Any]] = [
        {"id": "a", "prompt": "alpha", "expected": "echo: alpha", "grader": {"kind": "exact"}},
        {"id": "b", "prompt": "beta gamma", "expected": "echo: beta gamma"},
        {"id": "c", "prompt": "seven", "expected": "seven", "grader": {"kind": "contains"}},
        {"id": "d", "prompt": "delta", "expected": "omega", "grader": {"kind": "exact"}},
    ]
    return [TaskItem.model_validate(item) for item in raw]


def _run(config: Config, out: Path, aliases: list[str], **options: Any) -> list[ItemResult]:
    return run_through_gateway(config, aliases, _items(), RunOptions(out=out, **options))


def test_scores_and_costs_equal_hand_computed_values(fake_openai: Server, tmp_path: Path) -> None:
    results = _run(_config(fake_openai), tmp_path, ["big", "small"])
    big = {r.item_id: r for r in results if r.model == "big"}
    assert [big[i].score for i in "abcd"] == [1.0, 1.0, 1.0, 0.0]
    # Item b: prompt "beta gamma" = 2 words in, "echo: beta gamma" = 3 words out.
    assert (big["b"].prompt_tokens, big["b"].completion_tokens) == (2, 3)
    assert big["b"].cost_nanos == 2 * 2_000 + 3 * 8_000
    total_big = sum(r.cost_nanos or 0 for r in big.values())
    # Prompts: 1+2+1+1 = 5 words; answers: 2+3+2+2 = 9 words.
    assert total_big == 5 * 2_000 + 9 * 8_000
    small_total = sum(r.cost_nanos or 0 for r in results if r.model == "small")
    assert small_total == 5 * 1_000 + 9 * 1_000


def test_report_numbers(fake_openai: Server, tmp_path: Path) -> None:
    request = BenchRequest(
        tasks=[str(_write_items(tmp_path))],
        models=["big", "small"],
        reference="big",
        options=RunOptions(out=tmp_path / "out"),
    )
    report = run_bench(_config(fake_openai), request, Console(file=io.StringIO()))
    big, small = report.models
    assert big.items == 4 and big.errors == 0
    assert big.score is not None and big.score.estimate == pytest.approx(0.75)
    assert big.score.low <= 0.75 <= big.score.high
    assert big.total_cost == pytest.approx(82_000 / 1e9)
    assert big.cost_per_correct == pytest.approx(82_000 / 1e9 / 3)
    assert small.total_cost == pytest.approx(14_000 / 1e9)
    (comparison,) = report.comparisons
    assert comparison.quality_ratio.estimate == pytest.approx(1.0)
    assert comparison.cost_ratio == pytest.approx(14_000 / 82_000)
    assert "4 items" in comparison.headline and "2026-11-01" in comparison.headline
    assert (tmp_path / "out" / "report.json").exists()
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html and "https://" not in html


def _write_items(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(i.model_dump(by_alias=True)) for i in _items()))
    return path


def test_rerun_asks_no_upstream(fake_openai: Server, tmp_path: Path) -> None:
    config = _config(fake_openai)
    first = _run(config, tmp_path, ["big"])
    (tmp_path / "results.jsonl").unlink()  # forget the results, keep the response cache
    again = _run(config, tmp_path, ["big"])
    assert not any(r.cached for r in first)
    assert all(r.cached and r.error is None for r in again)
    assert [r.answer for r in again] == [r.answer for r in first]
    assert [r.score for r in sorted(again, key=lambda r: r.item_id)] == [1.0, 1.0, 1.0, 0.0]


def test_interrupted_run_resumes_without_reasking(fake_openai: Server, tmp_path: Path) -> None:
    config = _config(fake_openai)
    items = _items()
    run_through_gateway(config, ["big"], items[:2], RunOptions(out=tmp_path))
    results = run_through_gateway(config, ["big"], items, RunOptions(out=tmp_path))
    assert [(r.item_id, r.cached) for r in results] == [
        ("a", True), ("b", True), ("c", False), ("d", False)
    ]  # fmt: skip
    last = httpx.get(fake_openai.url + "/last-request").json()
    assert last["messages"][0]["content"] in ("seven", "delta")


def test_builtin_pack_end_to_end_on_the_bundled_model(tmp_path: Path) -> None:
    config = Config()
    request = BenchRequest(
        tasks=["pack:arithmetic"],
        models=[LOCAL],
        reference=LOCAL,
        options=RunOptions(out=tmp_path, concurrency=2, max_tokens=48),
        limit=4,
        hardware_costs={LOCAL: Decimal("0.36")},
    )
    report = run_bench(config, request, Console(file=io.StringIO()))
    (summary,) = report.models
    assert summary.items == 4 and summary.errors == 0
    assert summary.cost_basis == "hardware" and summary.total_cost > 0
    assert all(r.answer for r in report.results)


def test_cli_gate_and_outputs(fake_openai: Server, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from entrepot.cli import app

    config = tmp_path / "entrepot.yaml"
    models = [m.model_dump(mode="json", exclude_none=True) for m in _config(fake_openai).models[:2]]
    config.write_bytes(orjson.dumps({"models": models}))
    tasks = _write_items(tmp_path)
    common = ["bench", str(tasks), "--models", "big,small", "--config", str(config)]
    failing = CliRunner().invoke(
        app, [*common, "--out", str(tmp_path / "a"), "--fail-under", "0.9"]
    )
    assert failing.exit_code == 1, failing.output
    assert "scored below 0.9" in failing.output
    passing = CliRunner().invoke(
        app, [*common, "--out", str(tmp_path / "b"), "--fail-under", "0.5"]
    )
    assert passing.exit_code == 0, passing.output
    report = orjson.loads((tmp_path / "b" / "report.json").read_bytes())
    assert report["version"] == "2" and [m["model"] for m in report["models"]] == ["big", "small"]
