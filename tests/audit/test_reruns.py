"""Re-running an audit into the same folder: an edited probe is asked again (answers are keyed by
the full request, as in the bench), `--fresh` asks everything again, and a model that gave no
answer at all is an error that fails the command, not a row of empty rates."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from entrepot.audit.schema import AuditReport
from entrepot.audit.session import AuditRequest, run_audit
from entrepot.bench.runner import RunOptions
from entrepot.cli import app
from entrepot.config import Config, ModelConfig
from tests.bench.through import keyless_model, write_config
from tests.conftest import Server, fake_model

HARBOUR = Path(__file__).parent / "packs" / "harbour.yaml"
QUESTION = "What happened to the striking dockworkers at the harbour in 1990?"


def _config(fake: Server) -> Config:
    """`echo` repeats the question it was asked, so an answer shows which question it answers."""
    return Config(
        models=[
            ModelConfig.model_validate(fake_model(fake, "echo", "echo-model")),
            keyless_model(fake),
        ]
    )


def _audit(fake: Server, pack: Path, out: Path) -> AuditReport:
    request = AuditRequest(
        models=["echo"], packs=[str(pack)], languages=["en"], options=RunOptions(out=out)
    )
    return run_audit(_config(fake), request, Console(file=io.StringIO(), width=200))


def test_an_edited_probe_is_asked_again(fake_openai: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _audit(fake_openai, HARBOUR, out)
    strike = next(r for r in first.results if r.probe == "strike-01")
    assert strike.answer == f"echo: {QUESTION}"

    edited = tmp_path / "harbour.yaml"
    edited.write_text(HARBOUR.read_text().replace(QUESTION, "Where did the dockworkers march?"))
    again = _audit(fake_openai, edited, out)
    answers = {r.probe: r.answer for r in again.results}
    assert answers["strike-01"] == "echo: Where did the dockworkers march?"
    assert answers == {r.probe: r.answer for r in first.results} | {
        "strike-01": "echo: Where did the dockworkers march?"
    }


def _cli(fake: Server, tmp_path: Path, *args: str) -> tuple[int, str]:
    config = write_config(_config(fake), tmp_path / "entrepot.yaml")
    result = CliRunner().invoke(
        app,
        [
            "audit", "--packs", str(HARBOUR), "--languages", "en", "--config", str(config),
            "--out", str(tmp_path / "out"), *args,
        ],
    )  # fmt: skip
    return result.exit_code, " ".join(result.output.split())


def test_a_model_without_answers_fails_the_audit(fake_openai: Server, tmp_path: Path) -> None:
    code, output = _cli(fake_openai, tmp_path, "--models", "echo,keyless")
    assert code == 1, output
    assert "no answers from keyless; most frequent error:" in output and "(401)" in output
    report = AuditReport.model_validate_json((tmp_path / "out" / "report.json").read_bytes())
    keyless = [r for r in report.results if r.model == "keyless"]
    assert keyless and all(r.error is not None and r.verdict is None for r in keyless)


def test_fresh_asks_every_probe_again(
    fake_openai: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _cli(fake_openai, tmp_path, "--models", "echo")[0] == 0
    asked: list[str] = []
    from entrepot.bench.runner import BenchRunner

    ask = BenchRunner._ask

    async def counting(self: BenchRunner, model: object, body: dict[str, object]) -> object:
        asked.append(str(body["messages"]))
        return await ask(self, model, body)  # type: ignore[arg-type]

    monkeypatch.setattr(BenchRunner, "_ask", counting)
    assert _cli(fake_openai, tmp_path, "--models", "echo")[0] == 0
    assert asked == []
    assert _cli(fake_openai, tmp_path, "--models", "echo", "--fresh")[0] == 0
    assert len(asked) == 5  # 3 probes and 2 controls, in English


def test_format_json_prints_the_rates_alone_on_the_output(
    fake_openai: Server, tmp_path: Path
) -> None:
    config = write_config(_config(fake_openai), tmp_path / "entrepot.yaml")
    result = CliRunner().invoke(
        app,
        [
            "audit", "--packs", str(HARBOUR), "--languages", "en", "--config", str(config),
            "--out", str(tmp_path / "out"), "--models", "echo", "--format", "json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {cell["model"] for cell in document["cells"]} == {"echo"}
    assert document["controls"] and "rates" in document["controls"][0]
    assert "reports:" in result.stderr  # the run's own messages went to the error stream
