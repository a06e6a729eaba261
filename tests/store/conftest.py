"""Every store test runs on both stores: the per-user SQLite file, and PostgreSQL (a fresh
database per test on the session's private server, see tests/backing.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from entrepot.config import StoreConfig
from entrepot.store.db import open_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """Every ledger test on both stores: the per-user SQLite file, and PostgreSQL (a fresh
    database per test on the session's private server)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/t.db"
    else:
        url = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    engine = open_engine(StoreConfig(url=url))
    yield engine
    engine.dispose()


def fresh_postgres_database(server_url: str) -> str:
    name = f"test_{uuid.uuid4().hex}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
