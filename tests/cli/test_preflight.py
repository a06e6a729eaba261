"""Checks before work: a missing GGUF file, a missing key variable and a taken port are said at
once, by name, before any model loads; `serve` starts with a banner saying what it serves."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner, Result

import entrepot.shadow.serve
from entrepot.cli import app

runner = CliRunner()
REMOTE = """\
  - alias: remote/very-long-model-name-for-a-banner
    provider: openai_compatible
    target: t
    base_url: http://127.0.0.1:9/v1
    api_key_env: ENTREPOT_TEST_REMOTE_KEY
    jurisdiction: US
"""
LOCAL = """\
  - alias: mine
    provider: llama_cpp
    target: {path}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "80")
    for name in ("ENTREPOT_CONFIG", "ENTREPOT_DATABASE_URL", "ENTREPOT_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ENTREPOT_TEST_REMOTE_KEY", raising=False)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `serve` handed uvicorn, if it got that far (no gateway is built, no model loads)."""
    calls: dict[str, Any] = {}
    monkeypatch.setattr(entrepot.shadow.serve, "gateway_app", lambda config: ("app", config))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    return calls


def config(tmp_path: Path, *entries: str) -> str:
    path = tmp_path / "entrepot.yaml"
    path.write_text("models:\n" + "".join(entries), encoding="utf-8")
    return str(path)


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_missing_gguf_is_named_before_anything_loads(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    missing = tmp_path / "weights" / "qwen.gguf"
    result = run("serve", "-c", config(tmp_path, LOCAL.format(path=missing)), "--port", "0")
    assert result.exit_code == 2, result.output
    assert f"model 'mine': GGUF weights not found: {missing}" in result.output
    assert not started and "Traceback" not in result.output


def test_a_taken_port_is_said_before_the_model_loads(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"port {port} on 127.0.0.1 is already in use" in result.output
    assert not started


def test_the_banner_says_what_is_served_and_what_will_fail(
    tmp_path: Path, started: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("ENTREPOT_ADMIN_KEY", "admin-secret")
    result = run("serve", "-c", config(tmp_path, REMOTE), "--port", str(port))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"on http://127.0.0.1:{port}" in out
    assert "model remote/very-long-model-name-for-a-banner →" in out and "processed in US" in out
    assert f"data directory: {tmp_path / 'data'}" in out
    assert "no client key needed (loopback only)" in out
    assert "admin API: on ($ENTREPOT_ADMIN_KEY; console at /ui)" in out
    assert "$ENTREPOT_TEST_REMOTE_KEY is not set" in out and "its requests will fail" in out
    assert "admin-secret" not in out
    assert started["port"] == port


def test_bench_stops_on_a_missing_key_naming_it(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"id": "1", "task": "t", "prompt": "2+2?", "expected": "4"}\n')
    path = config(tmp_path, REMOTE)
    name = "remote/very-long-model-name-for-a-banner"
    result = run("bench", str(tasks), "--models", name, "-c", path, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert "$ENTREPOT_TEST_REMOTE_KEY is not set" in result.output
    assert not (tmp_path / "o").exists()


def test_audit_stops_on_a_missing_gguf(tmp_path: Path) -> None:
    path = config(tmp_path, LOCAL.format(path=tmp_path / "nope.gguf"))
    result = run("audit", "--models", "mine", "-c", path, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert "model 'mine': GGUF weights not found" in result.output
