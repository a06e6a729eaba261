"""The README's examples are tested: its configuration loads and its quickstart runs as written
against a zero-config gateway."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from entrepot.config import load_config
from tests.conftest import ROOT, Server


def _block(kind: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- readme-test: {kind} -->\n```\w+\n(.*?)```", text, re.DOTALL)
    assert match, f"README has no {kind} example"
    return match.group(1)


def test_readme_configuration_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "entrepot.yaml"
    path.write_text(_block("config"))
    config = load_config(path)
    assert [m.alias for m in config.models][:2] == ["local/smollm2-135m-instruct", "deepseek-chat"]
    assert config.server.require_client_keys


@pytest.mark.parametrize("kind", ["good-enough", "shadow"])
def test_readme_quality_routes_are_valid(tmp_path: Path, kind: str) -> None:
    """The quality autopilot's route examples, over models of the names they use."""
    names = ["big", "mid", "small", "support", "qwen-7b", "gpt-4o"]
    models = [
        {"alias": n, "provider": "openai_compatible", "target": n, "base_url": "http://x/v1"}
        for n in names
    ]
    path = tmp_path / "entrepot.yaml"
    path.write_text(yaml.safe_dump({"models": models}) + _block(kind))
    routes = load_config(path).routes
    assert routes and all(r.shadow or r.strategy == "good_enough" for r in routes.values())


def test_readme_quickstart_runs(zero_config_gateway: Server) -> None:
    code = _block("python").replace("http://127.0.0.1:8000", zero_config_gateway.url)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "local/smollm2-135m-instruct" in result.stdout
    assert "completion_tokens=" in result.stdout


def test_readme_task_file_loads_and_grades(tmp_path: Path) -> None:
    import asyncio

    from entrepot.bench.graders import grade
    from entrepot.bench.tasks import load_tasks

    path = tmp_path / "invoices.yaml"
    path.write_text(_block("tasks"))
    (item,) = load_tasks([path])
    assert "EUR 1,028.20" in item.chat_messages()[0]["content"]
    right = asyncio.run(grade(item, '{"total": 1028.2, "currency": "EUR"}'))
    assert right.score == 1.0


def test_readme_pack_extends_a_shipped_pack(tmp_path: Path) -> None:
    from entrepot.audit.classify import classify
    from entrepot.audit.packs import load_pack

    path = tmp_path / "cn-bank.yaml"
    path.write_text(_block("pack"))
    pack = load_pack(str(path))
    assert pack.topics[-1].id == "our-topic" and len(pack.topics) == 4
    probe = pack.topics[-1].probes[0]
    answered = classify(probe, "en", "The regulator imposed a fine on the bank.")
    slanted = classify(probe, "en", "It was a voluntary restructuring after a regulator fine.")
    assert answered is not None and answered.verdict == "answered"
    assert slanted is not None and slanted.verdict == "slanted"


@pytest.mark.parametrize("kind", ["responses", "anthropic"])
def test_readme_sdk_examples_run(zero_config_gateway: Server, kind: str) -> None:
    """The Responses and Anthropic Messages examples, as written, against the bundled model."""
    code = _block(kind).replace("http://127.0.0.1:8000", zero_config_gateway.url)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    if kind == "responses":
        assert result.stdout.rstrip().endswith(("completed", "incomplete"))
    else:
        assert "tool_use get_weather {'city': '" in result.stdout


def test_readme_fleet_config_serves_with_two_workers(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """The fleet example as written: two workers on PostgreSQL and Redis (no admin key on
    loopback, so keys are required but none are made: /health answers all the same)."""
    from tests.backing import new_database
    from tests.conftest import start_gateway

    config = yaml.safe_load(_block("fleet"))
    env = {"ENTREPOT_DATABASE_URL": new_database(postgres_url), "ENTREPOT_REDIS_URL": redis_url}
    server = start_gateway(tmp_path, "fleet", config, env, options=["--workers", "2"])
    try:
        health = httpx.get(server.url + "/health").json()
        assert health["status"] == "ok", health
        refused = httpx.post(server.url + "/v1/chat/completions", json={"model": "m"})
        assert refused.status_code == 401
    finally:
        server.stop()
