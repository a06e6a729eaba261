"""The ledger writer on PostgreSQL: a record that fails with an outage's kind of error on its own
is set aside instead of blocking everything behind it, a shutdown does not hang on a database
that stopped answering, and a writer process that dies loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.spool import QUARANTINE_FILE, Spool
from entrepot.ledger.writer import LedgerWriter
from entrepot.store.db import open_engine
from entrepot.types import UsageRecord
from tests.backing import Backing, new_database, start_postgres
from tests.ledger.helpers import stored_ids, until
from tests.store.pausing import paused, stop

NEVER = 3600.0
HANG_BOUND = 120  # seconds: a bound on hangs, not a timing check
# A trigger refusing some records with SQLSTATE 54000 (a server limit exceeded), which the
# driver raises as an OperationalError: the kind of error outages raise.
POISON = [
    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF starts_with(NEW.request_id, 'poison') THEN"
    " RAISE EXCEPTION 'row is too big for this server' USING ERRCODE = 'program_limit_exceeded';"
    " END IF; RETURN NEW; END $$",
    "CREATE TRIGGER poison BEFORE INSERT ON usage_records FOR EACH ROW EXECUTE FUNCTION poison()",
]


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = open_engine(StoreConfig(url=new_database(postgres_url)))
    yield engine
    engine.dispose()


@pytest.fixture
def own_postgres() -> Iterator[Backing]:
    server = start_postgres()
    yield server
    stop(server)


def record(request_id: str) -> UsageRecord:
    return UsageRecord(request_id=request_id, endpoint="chat.completions", cost_nanos=5)


def writer(engine: Engine, tmp_path: Path, **config: Any) -> LedgerWriter:
    settings = StoreConfig(spool_dir=str(tmp_path / "spool"), ledger_flush_seconds=NEVER, **config)
    return LedgerWriter(engine, settings, GatewayMetrics())


def quarantined(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "spool" / QUARANTINE_FILE).read_bytes().splitlines()
    return [json.loads(line) for line in lines]


def test_a_record_failing_like_an_outage_alone_is_quarantined_not_retried_forever(
    engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        for statement in POISON:
            conn.exec_driver_sql(statement)
    names = [f"req-{i}" for i in range(4)] + ["poison-1"] + [f"req-{i}" for i in range(4, 9)]

    async def main() -> None:
        w = writer(engine, tmp_path, ledger_batch_size=100)
        await w.start()
        for name in names:
            w.record(record(name))
        await w.flush()
        assert (w.written, w.spool.quarantined, w.spooling) == (9, 1, False)
        w.record(record("req-9"))  # nothing waits behind it
        await w.stop()
        assert w.written == 10

    asyncio.run(main())
    assert stored_ids(engine) == [n for n in names if n != "poison-1"] + ["req-9"]
    (entry,) = quarantined(tmp_path)
    assert entry["record"]["request_id"] == "poison-1"
    assert "row is too big" in entry["reason"]


def test_a_spooled_record_failing_like_an_outage_does_not_block_the_replay(
    engine: Engine, tmp_path: Path
) -> None:
    """The same record met in the spool: the segment replays, the record is set aside, and the
    segments behind it follow."""
    with engine.begin() as conn:
        for statement in POISON:
            conn.exec_driver_sql(statement)
    spool = Spool(tmp_path / "spool")
    spool.write(spool.reserve(), [record("req-0"), record("poison-1"), record("req-1")])
    spool.write(spool.reserve(), [record("req-2")])

    async def main() -> None:
        w = writer(engine, tmp_path)
        await w.start()
        await until(lambda: not w.spooling)
        await w.stop()
        assert (w.written, w.spool.quarantined) == (3, 1)

    asyncio.run(main())
    assert stored_ids(engine) == ["req-0", "req-1", "req-2"]


def test_shutdown_does_not_hang_on_a_database_that_stopped_answering(
    own_postgres: Backing, tmp_path: Path
) -> None:
    """SIGSTOP: the server's sockets stay open and nothing answers, so no error ever comes.
    Stopping the writer gives up on the store after its bound, spools what it holds, and the
    next start writes it all, once."""
    engine = open_engine(StoreConfig(url=new_database(own_postgres.url)))

    async def first_run() -> None:
        w = writer(engine, tmp_path, ledger_batch_size=2)
        await w.start()
        w.record(record("req-0"))
        await w.flush()  # the writer process is connected, and will hang on its connection
        with paused(own_postgres):
            for i in range(1, 6):
                w.record(record(f"req-{i}"))
            await until(lambda: w._busy > 0)  # a full batch is with the hung store
            async with asyncio.timeout(HANG_BOUND):
                await w.stop()
            assert (w.written, w.spool.records, w.held_records) == (1, 5, 0)

    async def second_run() -> None:
        w = writer(engine, tmp_path)
        await w.start()
        await until(lambda: not w.spooling)
        await w.stop()
        assert w.written == 5

    asyncio.run(first_run())
    asyncio.run(second_run())
    assert stored_ids(engine) == [f"req-{i}" for i in range(6)]
    engine.dispose()


def test_a_writer_process_that_dies_loses_nothing(engine: Engine, tmp_path: Path) -> None:
    async def main() -> None:
        w = writer(engine, tmp_path, ledger_batch_size=3)
        await w.start()
        for i in range(3):
            w.record(record(f"req-{i}"))
        await until(lambda: w.written == 3)
        process = w._store._process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        for i in range(3, 6):
            w.record(record(f"req-{i}"))
        await until(lambda: w.written == 6)  # spooled, then replayed through a new process
        await w.stop()

    asyncio.run(main())
    assert stored_ids(engine) == [f"req-{i}" for i in range(6)]
