"""`entrepot route`: each candidate deployment and why it is admitted or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.invoke import ok, write

pytestmark = pytest.mark.usefixtures("cli_env")


def test_route_explain_shows_each_candidate_and_why(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "policy:\n"
        "  reroute_alias: local/smollm2-135m-instruct\n"
        "models:\n"
        "  - alias: local/smollm2-135m-instruct\n"
        "    provider: llama_cpp\n"
        "    target: bundled:smollm2-135m-instruct\n"
        "  - {alias: ds, name: ds-api, provider: openai_compatible, target: deepseek-chat,\n"
        "     base_url: 'https://api.deepseek.com/v1', jurisdiction: CN}\n"
        "  - {alias: ds, name: ds-eu, provider: openai_compatible, target: deepseek-chat,\n"
        "     base_url: 'https://eu.example/v1', jurisdiction: EU}\n",
    )
    plain = ok("route", "--model", "ds", "--config", str(config))
    assert "data class internal" in plain and "ds-api" in plain and "ds-eu" in plain
    iban = "Pay GB82 WEST 1234 5698 7654 32"
    sensitive = ok("route", "--model", "ds", "--message", iban, "--config", str(config))
    assert "confidential" in sensitive and "iban×1" in sensitive
    assert "served as local/smollm2-135m-instruct" in sensitive
    offline = ok(
        "route", "--model", "ds", "--offline", "--config", str(config), "--data-class", "public"
    )
    assert "offline" in offline
