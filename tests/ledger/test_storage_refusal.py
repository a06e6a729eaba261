"""The database's files stop taking writes (a failing or full disk, a file made immutable) while
the gateway runs: the ledger spools every record and writes them once the files take writes
again. None is quarantined, although a known-good record written and rolled back is still
accepted: a rollback never reaches the disk, so only the commit shows the storage refusing.

The refusal is made with `chattr +i`, which stops writes through descriptors already open (the
writer's connection), root's included; chmod stops neither.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.writer import LedgerWriter
from entrepot.store.batches import storage_refuses
from entrepot.store.db import open_engine
from entrepot.types import UsageRecord
from tests.ledger.helpers import stored_ids, until


def record(i: int) -> UsageRecord:
    return UsageRecord(request_id=f"req-{i}", endpoint="chat.completions", cost_nanos=5)


@contextmanager
def unwritable(paths: list[Path]) -> Iterator[None]:
    """The files refuse every write until the block ends."""
    try:
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"files cannot be made immutable here: {error}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_database_files_refusing_writes_spool_every_record_and_quarantine_none(
    tmp_path: Path,
) -> None:
    database = tmp_path / "ledger.db"
    engine: Engine = open_engine(StoreConfig(url=f"sqlite:///{database}"))
    config = StoreConfig(ledger_flush_seconds=3600.0, ledger_batch_size=4)

    async def main() -> None:
        w = LedgerWriter(engine, config, GatewayMetrics())
        await w.start()
        for i in range(4):
            w.record(record(i))
        await w.flush()
        assert w.written == 4
        # The database file and its write-ahead log (the shared-memory index stays writable).
        files = [p for p in tmp_path.glob("ledger.db*") if not p.name.endswith("-shm")]
        with unwritable(files):
            for i in range(4, 12):
                w.record(record(i))
            await w.flush()
            assert (w.spool.quarantined, w.spool.records) == (0, 8)
            assert w.problems() == ["ledger spooling"]
        w._retry.set()
        await until(lambda: not w.spooling)
        w.record(record(12))
        await w.stop()
        assert w.spool.quarantined == 0

    asyncio.run(main())
    assert stored_ids(engine) == [f"req-{i}" for i in range(13)]


class _Failure(Exception):
    """A driver's error as SQLAlchemy wraps it (`orig`), with the code each driver sets."""

    def __init__(self, sqlite_errorcode: int | None = None, sqlstate: str | None = None) -> None:
        super().__init__("failed")
        self.orig = self
        if sqlite_errorcode is not None:
            self.sqlite_errorcode = sqlite_errorcode
        if sqlstate is not None:
            self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("failure", "storage"),
    [
        (_Failure(sqlite_errorcode=10 | 3 << 8), True),  # SQLITE_IOERR_WRITE
        (_Failure(sqlite_errorcode=13), True),  # SQLITE_FULL
        (_Failure(sqlite_errorcode=8), True),  # SQLITE_READONLY
        (_Failure(sqlite_errorcode=5), False),  # SQLITE_BUSY: the known-good record decides
        (_Failure(sqlite_errorcode=19), False),  # SQLITE_CONSTRAINT: the record's
        (_Failure(sqlstate="53100"), True),  # disk_full
        (_Failure(sqlstate="58030"), True),  # io_error
        (_Failure(sqlstate="25006"), True),  # read_only_sql_transaction
        (_Failure(sqlstate="54000"), False),  # program_limit_exceeded: may be the record's
        (_Failure(sqlstate="23502"), False),  # not_null_violation
        (ValueError("not a driver's"), False),
    ],
)
def test_which_failures_are_the_storage_refusing(failure: Exception, storage: bool) -> None:
    assert storage_refuses(failure) is storage
