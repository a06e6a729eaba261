"""Migrations run once per fleet: replicas opening a fresh database together do not race."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.backing import new_database
from tests.conftest import ROOT

REPLICAS = 4
# Each replica imports everything first, then waits for the others before opening the store,
# so that the four opens overlap.
REPLICA = """
import sys, time
from pathlib import Path
from entrepot.config import StoreConfig
from entrepot.store.db import engine_for, migrate
engine = engine_for(StoreConfig(), sys.argv[1])
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(migrate(engine))
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.db"
    return new_database(request.getfixturevalue("postgres_url"))


def test_replicas_starting_together_migrate_once(fresh_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, fresh_url, str(tmp_path / f"ready-{i}"), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(REPLICAS)
    ]
    try:
        for i, replica in enumerate(replicas):
            while not (tmp_path / f"ready-{i}").exists():
                assert replica.poll() is None, replica.communicate()[1]
        go.touch()
        outcomes = [replica.communicate(timeout=120) for replica in replicas]
    finally:
        for replica in replicas:
            replica.kill()
    assert [replica.returncode for replica in replicas] == [0] * REPLICAS, outcomes
    found = sorted(out.strip() for out, _ in outcomes)
    head = head_revision()
    # one replica found the database empty and migrated it; the others found it at head
    assert found == sorted(["None"] + [head] * (REPLICAS - 1))
    engine = create_engine(fresh_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            head
        ]
    engine.dispose()


def head_revision() -> str:
    from tests.store.test_usage import head_revision as head

    return head()
