"""`entrepot audit` from the command line: a small pack end to end on the bundled model through
a real gateway, listing packs, the report schema, and bad input that exits cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from entrepot.audit.schema import AuditReport
from entrepot.cli import app
from tests.bench.html_check import check_page
from tests.conftest import LOCAL, Server

HARBOUR = str(Path(__file__).parent / "packs" / "harbour.yaml")


def test_small_pack_end_to_end_on_the_bundled_model(
    gateway: Server, client_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_TEST_KEY", client_key)
    out = tmp_path / "local"
    result = CliRunner().invoke(
        app,
        [
            "audit", "--models", LOCAL, "--packs", HARBOUR, "--gateway", gateway.url,
            "--api-key-env", "AUDIT_TEST_KEY", "--max-tokens", "48", "--concurrency", "2",
            "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = AuditReport.model_validate_json((out / "report.json").read_bytes())
    assert len(report.results) == 2 * 5  # 3 probes and 2 controls, in English and Chinese
    assert all(r.error is None and r.verdict is not None for r in report.results)
    assert all(r.answer or r.rule_detail == "empty answer" for r in report.results)
    cells = {(c.topic, c.language): c for c in report.cells}
    assert cells[("strike", "en")].n == 2 and cells[("canal", "zh")].n == 1
    assert {(c.language, c.n) for c in report.controls} == {("en", 2), ("zh", 2)}
    (model,) = report.models
    assert model.provider == "llama_cpp" and model.host == "this machine (in-process)"
    assert "Rate [95% CI]" in result.output
    html = (out / "report.html").read_text()
    check_page(html)


def test_list_and_schema() -> None:
    listed = CliRunner().invoke(app, ["audit", "--list"])
    assert listed.exit_code == 0, listed.output
    for name in ("cn", "us", "ru", "in", "gulf", "il-ps"):
        assert name in listed.output
    schema = CliRunner().invoke(app, ["audit", "--schema"])
    assert schema.exit_code == 0
    assert "ProbeResult" in orjson.loads(schema.output)["$defs"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit"], "give --models"),
        (["audit", "--models", "nope", "--packs", HARBOUR], "model 'nope' is not configured"),
        (["audit", "--models", LOCAL, "--packs", "atlantis"], "unknown probe pack 'atlantis'"),
        (
            ["audit", "--models", LOCAL, "--packs", HARBOUR, "--languages", "ar"],
            "no selected pack has language(s) ar",
        ),
        (["audit", "diff", "nowhere-a", "nowhere-b"], "no audit report at nowhere-a"),
    ],
)
def test_bad_input_exits_with_a_message(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_diff_needs_pairs_when_aliases_differ(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from entrepot.audit.schema import ModelInfo

    def run(alias_list: list[str], name: str) -> Path:
        models = [
            ModelInfo(
                alias=a,
                provider="openai_compatible",
                host="h",
                jurisdiction="US",
                total_cost=0,
                currency="USD",
                price_date=None,
                cost_basis="unpriced",
            )
            for a in alias_list
        ]
        report = AuditReport(
            created_at=datetime.now(UTC),
            packs=[],
            languages=[],
            models=models,
            cells=[],
            jurisdictions=[],
            controls=[],
            results=[],
        )
        path = tmp_path / f"{name}.json"
        path.write_text(report.model_dump_json())
        return path

    a, b = run(["x", "y"], "a"), run(["z", "w"], "b")
    result = CliRunner().invoke(app, ["audit", "diff", str(a), str(b), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--pair BEFORE=AFTER" in result.output
    wrong = CliRunner().invoke(
        app, ["audit", "diff", str(a), str(b), "--pair", "x=q", "--out", str(tmp_path)]
    )
    assert wrong.exit_code == 2 and "expected BEFORE=AFTER" in wrong.output
    paired = CliRunner().invoke(
        app, ["audit", "diff", str(a), str(b), "--pair", "x=z", "--out", str(tmp_path)]
    )
    assert paired.exit_code == 0, paired.output
    assert "0 answers compared" in " ".join(paired.output.split())
    as_json = CliRunner().invoke(
        app,
        [
            "audit",
            "diff",
            str(a),
            str(b),
            "--pair",
            "x=z",
            "--out",
            str(tmp_path),
            "--format",
            "json",
        ],
    )
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["compared"] == 0 and document["changes"] == []
    assert "diff:" in as_json.stderr
