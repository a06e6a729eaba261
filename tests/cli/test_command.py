"""The command as a whole: its version, and the argument and configuration errors every
subcommand reports the same way (exit 2, with the line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.invoke import ok, run, write

pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.mark.parametrize("given", ["X=abc", "X=-1", "X=nan", "=0.3", "X"])
def test_bench_says_what_is_wrong_with_a_hardware_cost(given: str) -> None:
    result = run("bench", "pack:arithmetic", "--models", "X", "--hardware-cost", given)
    assert result.exit_code == 2, result.output
    assert "--hardware-cost" in result.output and "MODEL=USD_PER_HOUR" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.usefixtures("no_server")
@pytest.mark.parametrize("command", [["models"], ["keys", "list"], ["usage"], ["serve"]])
def test_config_error_exits_2_with_the_line(tmp_path: Path, command: list[str]) -> None:
    config = write(tmp_path, "server:\n  port: 8000\n  hots: 0.0.0.0\n")
    result = run(*command, "--config", str(config))
    assert result.exit_code == 2, result.output
    assert "configuration error" in result.output
    assert "line 3: server.hots: Extra inputs are not permitted" in result.output


def test_config_error_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, "models:\n  - alias: a\n    provider: llama_cpp\n    target: [x]\n")
    monkeypatch.setenv("ENTREPOT_CONFIG", str(config))
    result = run("models")
    assert result.exit_code == 2
    assert "line 4: models.0.target" in result.output


def test_version() -> None:
    from entrepot import __version__

    assert ok("--version").strip() == f"entrepot {__version__}"
