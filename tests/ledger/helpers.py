"""What the ledger tests read back from a store, and how they wait for the writer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, func, select

from entrepot.store.tables import usage_records
from entrepot.store.writer_process import Rejected, StoreProcess
from entrepot.types import UsageRecord


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(usage_records.c.request_id).order_by(usage_records.c.id))
        return [row[0] for row in rows]


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(usage_records)).scalar_one())


async def until(condition: Callable[[], bool], attempts: int = 4_000) -> None:
    """Let the event loop run until `condition` holds (a bound on hangs, not a timing check)."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


@contextmanager
def refusing(engine: Engine) -> Iterator[None]:
    """The database refuses every insert into the ledger, the known-good probe included, while
    reads go on: a store that cannot take writes whatever the record (on PostgreSQL with the error
    of a full disk). A trigger does it, so the refusal reaches the ledger's own writer process."""
    if engine.dialect.name == "sqlite":
        create = [
            "CREATE TRIGGER ledger_refused BEFORE INSERT ON usage_records"
            " BEGIN SELECT RAISE(ABORT, 'the ledger takes no writes'); END"
        ]
        drop = ["DROP TRIGGER ledger_refused"]
    else:
        create = [
            "CREATE FUNCTION ledger_refused() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'no space left on device' USING ERRCODE = 'disk_full'; END $$",
            "CREATE TRIGGER ledger_refused BEFORE INSERT ON usage_records"
            " FOR EACH ROW EXECUTE FUNCTION ledger_refused()",
        ]
        drop = ["DROP TRIGGER ledger_refused ON usage_records", "DROP FUNCTION ledger_refused()"]
    with engine.begin() as conn:
        for statement in create:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.exec_driver_sql(statement)


@contextmanager
def recorded_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Request ids of every batch the ledger hands to its writer process, in order."""
    seen: list[list[str]] = []
    original = StoreProcess.write

    async def recording(self: StoreProcess, records: Sequence[UsageRecord]) -> tuple[int, Rejected]:
        seen.append([r.request_id for r in records])
        return await original(self, records)

    monkeypatch.setattr(StoreProcess, "write", recording)
    yield seen
