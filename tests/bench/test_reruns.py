"""Re-running a bench into the same out directory, as a user does after editing a task file or a
flag: what changed is asked (or graded) again, what did not is reused and counted as such, and
`--fresh` starts over. Also: fewer models than the directory holds, and a model whose every call
fails."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from entrepot.bench.report import summary_listing
from entrepot.bench.runner import BenchRunner, RunOptions
from entrepot.bench.schema import BenchReport, ItemResult, TaskItem
from entrepot.bench.session import BenchRequest, run_bench
from entrepot.bench.through_gateway import InProcessGateway
from entrepot.cli import app
from entrepot.config import Config, ModelConfig
from tests.bench.through import keyless_model, run_through_gateway, write_config
from tests.conftest import Server, fake_model

PRICE = {"input_per_1m": "2", "output_per_1m": "8", "as_of": "2026-11-01"}
ITEMS: list[dict[str, Any]] = [
    {"id": "a", "prompt": "alpha", "expected": "echo: alpha", "grader": {"kind": "exact"}},
    {"id": "b", "prompt": "beta", "expected": "echo: beta", "grader": {"kind": "exact"}},
    {"id": "c", "prompt": "gamma", "expected": "omega", "grader": {"kind": "exact"}},
]


def _config(fake: Server) -> Config:
    return Config(
        models=[
            ModelConfig.model_validate(fake_model(fake, "big", "echo-model", price=PRICE)),
            ModelConfig.model_validate(fake_model(fake, "small", "echo-model", price=PRICE)),
            keyless_model(fake),
        ]
    )


def _items(**changes: dict[str, Any]) -> list[TaskItem]:
    return [TaskItem.model_validate({**item, **changes.get(item["id"], {})}) for item in ITEMS]


def _run(
    fake: Server, out: Path, items: list[TaskItem] | None = None, **options: Any
) -> dict[str, ItemResult]:
    results = run_through_gateway(
        _config(fake), ["big"], items or _items(), RunOptions(out=out, **options)
    )
    return {r.item_id: r for r in results}


def _last_request(fake: Server) -> dict[str, Any]:
    last: dict[str, Any] = httpx.get(fake.url + "/last-request").json()
    return last


def test_changed_settings_are_asked_again(fake_openai: Server, tmp_path: Path) -> None:
    first = _run(fake_openai, tmp_path)
    assert not any(r.cached for r in first.values())
    same = _run(fake_openai, tmp_path)
    assert all(r.cached for r in same.values())

    longer = _run(fake_openai, tmp_path, max_tokens=7)
    assert not any(r.cached for r in longer.values())
    assert _last_request(fake_openai)["max_tokens"] == 7
    reseeded = _run(fake_openai, tmp_path, max_tokens=7, seed=5)
    assert not any(r.cached for r in reseeded.values())
    assert _last_request(fake_openai)["seed"] == 5

    edited = _run(fake_openai, tmp_path, _items(a={"prompt": "alpha two"}), max_tokens=7, seed=5)
    assert [r.cached for r in edited.values()] == [False, True, True]
    assert edited["a"].answer == "echo: alpha two" and edited["a"].score == 0.0


def test_a_changed_grader_grades_the_kept_answer_again(fake_openai: Server, tmp_path: Path) -> None:
    assert _run(fake_openai, tmp_path)["c"].score == 0.0
    fixed = _run(fake_openai, tmp_path, _items(c={"expected": "echo: gamma"}))
    assert fixed["c"].cached and fixed["c"].score == 1.0
    loose = _run(fake_openai, tmp_path, _items(c={"grader": {"kind": "contains"}}))
    assert loose["c"].cached and loose["c"].score == 0.0  # "omega" is not in "echo: gamma"
    regex = {"grader": {"kind": "regex", "pattern": "^echo: g"}}
    assert _run(fake_openai, tmp_path, _items(c=regex))["c"].score == 1.0


def test_fresh_starts_over(fake_openai: Server, tmp_path: Path) -> None:
    _run(fake_openai, tmp_path)
    again = _run(fake_openai, tmp_path, fresh=True)
    assert not any(r.cached for r in again.values())
    assert all(r.cached for r in _run(fake_openai, tmp_path).values())


def _write_items(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(item) for item in ITEMS))
    return path


def _bench(fake: Server, tmp_path: Path, models: list[str], out: Path) -> Any:
    request = BenchRequest(
        tasks=[str(_write_items(tmp_path))],
        models=models,
        reference=models[0],
        options=RunOptions(out=out),
    )
    console = Console(file=io.StringIO(), width=200)
    return run_bench(_config(fake), request, console), console.file.getvalue()  # type: ignore[attr-defined]


def test_fewer_models_than_the_out_directory_holds(fake_openai: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _bench(fake_openai, tmp_path, ["big", "small"], out)
    report, printed = _bench(fake_openai, tmp_path, ["small"], out)
    assert [m.model for m in report.models] == ["small"]
    assert {r.model for r in report.results} == {"small"}
    assert all(r.cached for r in report.results)
    assert "answers: 3 reused from earlier runs, 0 asked" in printed


def test_the_count_of_reused_and_asked_answers_is_printed(
    fake_openai: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _, first = _bench(fake_openai, tmp_path, ["big"], out)
    assert "answers: 0 reused from earlier runs, 3 asked" in first
    _, second = _bench(fake_openai, tmp_path, ["big", "small"], out)
    assert "answers: 3 reused from earlier runs, 3 asked" in second


def test_a_model_whose_every_call_failed_is_an_error_not_a_zero(
    fake_openai: Server, tmp_path: Path
) -> None:
    config = write_config(_config(fake_openai), tmp_path / "entrepot.yaml")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "bench", str(_write_items(tmp_path)), "--models", "big,keyless",
            "--config", str(config), "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "keyless: every call failed (3); not scored" in output
    assert "Most frequent error:" in output and "(401)" in output
    assert "no answers from keyless" in output
    report = orjson.loads((out / "report.json").read_bytes())
    big, keyless = report["models"]
    assert keyless["score"] is None and not keyless["on_frontier"]
    assert keyless["errors"] == 3 and "credentials (401)" in keyless["top_error"]
    assert big["on_frontier"] and big["score"]["estimate"] == pytest.approx(2 / 3)
    assert report["comparisons"] == []
    listing = summary_listing(BenchReport.model_validate(report))
    rows = {r["model"]: {c.heading: c.cell(r) for c in listing.columns} for r in listing.rows}
    assert (rows["keyless"]["per item"], rows["keyless"]["p50/p95"]) == ("—", "—")
    assert rows["big"]["per item"] != "—" and rows["big"]["p50/p95"] != "—"


def test_the_live_line_of_a_model_without_answers_shows_its_errors_not_a_zero(
    fake_openai: Server, tmp_path: Path
) -> None:
    _, printed = _bench(fake_openai, tmp_path, ["big", "keyless"], tmp_path / "out")
    lines = {line.split()[0]: line for line in printed.splitlines() if " 3/3 " in line}
    assert "no answers · errors: 3" in lines["keyless"], printed
    assert "score" not in lines["keyless"]
    assert "score 0.67 · 0.0001 USD" in lines["big"] and "errors" not in lines["big"]


def test_a_judge_grade_is_kept_for_the_same_judge_only(
    fake_openai: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entrepot.bench import judge as judges

    asked: list[str] = []
    ask = judges.ask

    async def counting(model: Any, prompt: str, max_tokens: int = 200) -> tuple[str, int]:
        asked.append(model.alias)
        return await ask(model, prompt, max_tokens)

    monkeypatch.setattr(judges, "ask", counting)
    graded = {"grader": {"kind": "judge", "rubric": "Says alpha."}}
    items = [TaskItem.model_validate({**ITEMS[0], **graded})]

    def run(judge: str) -> ItemResult:
        async def main() -> list[ItemResult]:
            async with InProcessGateway(_config(fake_openai), ["big", judge], "bench", None) as gw:
                (model,), (helper,) = gw.models(["big"]), gw.models([judge])
                runner = BenchRunner(
                    [model], items, RunOptions(out=tmp_path), judge=judges.make_judge(helper)
                )
                return await runner.run()

        (result,) = asyncio.run(main())
        return result

    first = run("small")
    assert run("small").cached and asked == ["small"]
    assert run("keyless").error is not None and asked == ["small", "keyless"]
    assert first.detail is not None and first.detail.startswith("judge score")


def test_format_csv_prints_the_summary_alone_on_the_output(
    fake_openai: Server, tmp_path: Path
) -> None:
    config = write_config(_config(fake_openai), tmp_path / "entrepot.yaml")
    result = CliRunner().invoke(
        app,
        [
            "bench", str(_write_items(tmp_path)), "--models", "big,small",
            "--config", str(config), "--out", str(tmp_path / "out"), "--format", "csv",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["model"] for row in rows] == ["big", "small"]
    assert float(rows[0]["total_cost"]) >= 0 and rows[0]["items"] == "3"
    assert "reports:" in result.stderr
