"""The configuration tests choose their file themselves: `$ENTREPOT_CONFIG` from the shell that
runs them must not leak in."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENTREPOT_CONFIG", raising=False)
