"""Running the `entrepot` command in-process, and the key store it writes to."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from entrepot.cli import app
from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore

runner = CliRunner()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "entrepot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def store() -> KeyStore:
    return KeyStore(open_engine(StoreConfig()))
