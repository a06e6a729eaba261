"""Fixtures for the command's tests, asked for by name rather than autouse: some modules here set
up an environment of their own (a narrower terminal, a configuration of their own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

import entrepot.shadow.serve


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A throwaway data directory, wide tables, and none of the caller's configuration."""
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables must not wrap cells we look for
    for name in ("ENTREPOT_CONFIG", "ENTREPOT_DATABASE_URL", "ENTREPOT_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if `serve` gets as far as building a gateway or starting uvicorn."""

    def forbidden(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("serve went past the bind check")

    monkeypatch.setattr(uvicorn, "run", forbidden)
    monkeypatch.setattr(entrepot.shadow.serve, "gateway_app", forbidden)
