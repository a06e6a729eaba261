"""`entrepot audit` in-process asks through the gateway's pipeline: a probe the policy may not send
to a model's jurisdiction is refused by policy (never classified as the model refusing), nothing
reaches the upstream, and every call is in the ledger as the audit's."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from entrepot.audit.session import AuditRequest, run_audit
from entrepot.bench.runner import RunOptions
from entrepot.cli import app
from entrepot.config import Config
from tests.conftest import Server, fake_model, start_fake

PACK = str(Path(__file__).parent / "packs" / "harbour.yaml")


def test_a_probe_the_policy_forbids_is_refused_by_policy(
    fake_openai: Server, tmp_path: Path
) -> None:
    target = "audit-policy-cn"
    config = Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
            # Everything this deployment is asked counts as confidential, which may not go to CN.
            "policy": {
                "default_class": "confidential",
                "rules": {"confidential": {"deny": ["CN"]}},
            },
            "models": [
                {
                    "alias": "cn-model",
                    "provider": "openai_compatible",
                    "target": target,
                    "base_url": fake_openai.url + "/v1",
                    "api_key_env": "FAKE_UPSTREAM_KEY",
                    "jurisdiction": "CN",
                }
            ],
        }
    )
    request = AuditRequest(
        models=["cn-model"],
        packs=[PACK],
        languages=["en"],
        limit=1,
        options=RunOptions(out=tmp_path / "out"),
    )
    report = run_audit(config, request, Console(file=io.StringIO(), width=200))

    assert report.results
    for result in report.results:
        assert result.refused_by_policy is not None and "CN" in result.refused_by_policy
        assert result.verdict is None and result.rule_verdict is None and result.error is None
    assert all(cell.n == 0 and cell.errors == 0 for cell in report.cells)
    assert int(httpx.get(f"{fake_openai.url}/received/{target}").json()) == 0

    with sqlite3.connect(tmp_path / "ledger.db") as db:
        rows = db.execute("SELECT endpoint, key_name, status, error_type FROM usage_records")
        assert sorted(rows) == [("audit:chat", "cli:audit", 403, "egress_denied")] * len(
            report.results
        )


def test_the_command_says_the_policy_refused_the_probes_and_fails(
    fake_openai: Server, tmp_path: Path
) -> None:
    """A model the policy kept every probe from is not silent for no reason: the command
    names the rule (brackets and all) and exits 1, as for a model whose every call failed."""
    target = "audit-policy-cli"
    config = tmp_path / "entrepot.yaml"
    settings = {
        "policy": {
            "default_class": "confidential",
            "rules": {"confidential": {"allow": ["local"]}},
        },
        "models": [fake_model(fake_openai, "remote", target)],
    }
    config.write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(
        app,
        ["audit", "--models", "remote", "--packs", PACK, "--languages", "en", "--limit", "1",
         "--config", str(config), "--out", str(tmp_path / "out")],
    )  # fmt: skip
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    assert "remote: 3 probe(s) refused by policy, not classified:" in output
    assert "allows only [local]" in output
    assert "no answers from remote: every probe was refused by policy" in output
    assert int(httpx.get(f"{fake_openai.url}/received/{target}").json()) == 0


def test_an_audit_sees_the_models_refusal_on_a_route_that_falls_back(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A route's `on_refusal: fallback` would answer a refused probe with another deployment's
    answer — the very refusal an audit measures, hidden. The audit asks the model itself."""
    refusing = start_fake(tmp_path_factory.mktemp("refusing"), "refusing_upstream", "/v1/models")
    try:
        config = Config.model_validate(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
                "models": [
                    fake_model(refusing, "guarded", "canned", name="refuses"),
                    fake_model(refusing, "guarded", "answers", name="answers"),
                ],
                "routes": {"guarded": {"on_refusal": "fallback"}},
            }
        )
        request = AuditRequest(
            models=["guarded"],
            packs=[PACK],
            languages=["en"],
            limit=1,
            options=RunOptions(out=tmp_path / "out"),
        )
        report = run_audit(config, request, Console(file=io.StringIO(), width=200))
        received = httpx.get(f"{refusing.url}/received/answers").json()["requests"]
    finally:
        refusing.stop()
    assert report.results
    assert {r.verdict for r in report.results} == {"refused"}
    assert received == 0
