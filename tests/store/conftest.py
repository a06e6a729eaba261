"""Every store test runs on both stores: the per-user SQLite file, and PostgreSQL (a fresh
database per test on the session's private server, see tests/backing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from tests.backing import new_database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """Every ledger test on both stores: the per-user SQLite file, and PostgreSQL (a fresh
    database per test on the session's private server)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/t.db"
    else:
        url = new_database(request.getfixturevalue("postgres_url"))
    engine = open_engine(StoreConfig(url=url))
    yield engine
    engine.dispose()
