"""Every listing of the `entrepot` command at 80 columns: whole names and numbers (no "…"), and
the same rows with `--format json` and `--format csv`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from entrepot.cli import app
from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.usage import insert_records
from entrepot.types import UsageRecord

runner = CliRunner()
NAMES = [
    "local/smollm2-135m-instruct",
    "local/smollm2-135m-instruct-q8",
    "local/smollm2-135m-instruct-long-context",
]
CONFIG = "models:\n" + "".join(
    f"""  - alias: {name}
    provider: openai_compatible
    target: {name.split("/")[1]}
    base_url: http://127.0.0.1:9/v1
    price: {{input_per_1m: "0.02", output_per_1m: "0.04", as_of: 2026-11-01}}
"""
    for name in NAMES
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "80")
    config = tmp_path / "entrepot.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("ENTREPOT_CONFIG", str(config))
    for name in ("ENTREPOT_DATABASE_URL", "ENTREPOT_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def whole(out: str, *texts: str) -> None:
    """Nothing cut, and each text on one line of the output."""
    assert "…" not in out, out
    lines = out.splitlines()
    for text in texts:
        assert any(text in line for line in lines), f"{text!r} not whole in:\n{out}"


def _usage() -> None:
    records = [
        UsageRecord(
            request_id=f"r{i}",
            endpoint="chat.completions",
            key_name="research-platform-team",
            model_alias=name,
            prompt_tokens=12_345,
            completion_tokens=678,
            cost_nanos=1_234,
            currency="USD",
            status=200,
        )
        for i, name in enumerate(NAMES)
    ]
    insert_records(open_engine(StoreConfig()), records)


def test_models_whole_at_80_columns() -> None:
    out = ok("models")
    whole(out, *NAMES, "(2026-11-01)")


def test_keys_list_whole_at_80_columns() -> None:
    ok("keys", "create", "research-platform-team", "--models", ",".join(NAMES), "--budget", "25")
    out = ok("keys", "list")
    whole(out, "research-platform-team", "$25.00/month", *NAMES)
    assert any(line.strip().startswith("created") and "20" in line for line in out.splitlines())


def test_usage_whole_at_80_columns() -> None:
    _usage()
    out = ok("usage", "--by", "model")
    whole(out, *NAMES, "12,345", "$0.00000123")


def test_route_explain_whole_at_80_columns() -> None:
    out = ok("route", "--model", NAMES[2], "--explain")
    whole(out, f"openai_compatible:{NAMES[2]}")
    assert "why" in out and "allowed" in out


@pytest.mark.parametrize(
    "args",
    [["models"], ["keys", "list"], ["usage", "--by", "model"], ["bench", "--list"],
     ["audit", "--list"]],
)  # fmt: skip
def test_every_listing_speaks_json_and_csv(args: list[str]) -> None:
    ok("keys", "create", "research-platform-team", "--models", NAMES[0])
    _usage()
    rows = json.loads(ok(*args, "--format", "json"))
    assert isinstance(rows, list) and rows
    read = list(csv.DictReader(io.StringIO(ok(*args, "--format", "csv"))))
    assert len(read) == len(rows)
    assert set(read[0]) == set(rows[0])


def test_route_explain_as_json_and_csv() -> None:
    document = json.loads(ok("route", "--model", NAMES[0], "--format", "json"))
    assert document["alias"] == NAMES[0]
    assert [c["alias"] for c in document["candidates"]] == [NAMES[0]]
    read = list(csv.DictReader(io.StringIO(ok("route", "--model", NAMES[0], "--format", "csv"))))
    assert read[0]["deployment"] == f"openai_compatible:{NAMES[0]}"


def test_shadow_report_as_json() -> None:
    document = json.loads(ok("shadow", "report", "--format", "json"))
    assert document["verdicts"] == []
