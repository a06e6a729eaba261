"""The ledger when the store is down or refuses a record, against a real SQLite file.

The failures are the database's own: a trigger refusing every insert (reads go on), a column the
table lacks, another connection holding the write lock (`BEGIN EXCLUSIVE`) as a long migration
or a stuck writer would. Nothing here waits for a duration, only for a condition.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, create_engine

from entrepot.config import StoreConfig
from entrepot.exceptions import ConfigError
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.spool import (
    OWNER_FILE,
    QUARANTINE_FILE,
    Spool,
    peek_every_slot,
    spool_directory,
)
from entrepot.ledger.writer import HOLD_BATCHES, SPILL_BATCHES, LedgerWriter
from entrepot.store.db import open_engine
from entrepot.store.usage import insert_records
from entrepot.types import UsageRecord
from tests.ledger.helpers import refusing, row_count, stored_ids, until

NEVER = 3600.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "t.db"


@pytest.fixture
def engine(db_path: Path) -> Engine:
    return open_engine(StoreConfig(url=f"sqlite:///{db_path}"))


@contextmanager
def locked(db_path: Path) -> Iterator[None]:
    """The database's write lock held by another connection: writes fail, reads go on."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("COMMIT")
        holder.close()


def record(i: int, **fields: Any) -> UsageRecord:
    return UsageRecord(
        request_id=f"req-{i}",
        endpoint="chat.completions",
        model_alias="m",
        deployment="openai_compatible:m",
        prompt_tokens=10,
        completion_tokens=5,
        cost_nanos=1234,
        currency="USD",
        findings={"email": 1},
        attempts=[{"deployment": "d", "outcome": "ok", "reason": None}],
        **fields,
    )


def writer(
    engine: Engine, batch_size: int, interval: float = 0.01, metrics: GatewayMetrics | None = None
) -> LedgerWriter:
    config = StoreConfig(ledger_flush_seconds=interval, ledger_batch_size=batch_size)
    return LedgerWriter(engine, config, metrics or GatewayMetrics())


def ids(n: int, first: int = 0) -> list[str]:
    return [f"req-{i}" for i in range(first, first + n)]


def spooled_ids(directory: Path) -> list[str]:
    lines = b"".join(p.read_bytes() for p in sorted(directory.glob("*.jsonl")) if p.stem.isdigit())
    return [orjson.loads(line)["request_id"] for line in lines.splitlines()]


def exposed(metrics: GatewayMetrics) -> set[str]:
    return set(generate_latest(metrics.registry).decode().splitlines())


def test_outage_spools_durably_then_replays_in_order_exactly_once(engine: Engine) -> None:
    metrics = GatewayMetrics()

    async def main() -> None:
        w = writer(engine, batch_size=3, metrics=metrics)
        await w.start()
        w.record(record(0))
        await until(lambda: w.written == 1)
        with refusing(engine):
            for i in range(1, 8):
                w.record(record(i))
            await until(lambda: w.spool.records == 7)
            assert w.spooling and w.problems() == ["ledger spooling"]
            # on disk, where a crash now would find them
            assert spooled_ids(w.spool.directory) == ids(7, first=1)
            assert "entrepot_ledger_spooled_records 7.0" in exposed(metrics)
            assert w.backlog()["spooled_bytes"] == w.spool.bytes > 0
            # what arrives during the outage queues behind the spool
            w.record(record(8))
            await until(lambda: w.spool.records == 8)
            assert stored_ids(engine) == ["req-0"]
        await until(lambda: not w.spooling)
        assert w.problems() == []
        w.record(record(9))
        await w.stop()
        assert w.written == 10

    asyncio.run(main())
    assert stored_ids(engine) == ids(10)
    assert "entrepot_ledger_spooled_records 0.0" in exposed(metrics)
    assert "entrepot_ledger_spooled_bytes 0.0" in exposed(metrics)
    assert spooled_ids(spool_directory(StoreConfig(), engine)) == []


def test_shutdown_during_an_outage_spools_and_the_next_start_replays(engine: Engine) -> None:
    async def first_run() -> None:
        w = writer(engine, batch_size=100, interval=NEVER)
        await w.start()
        for i in range(5):
            w.record(record(i))
        await w.stop()  # the store is locked: memory goes to the spool
        assert w.written == 0 and w.spool.records == 5

    async def second_run() -> None:
        w = writer(engine, batch_size=2, interval=NEVER)
        await w.start()  # replays what the first run left
        await until(lambda: not w.spooling)
        w.record(record(5))
        await w.stop()
        assert w.written == 6

    with refusing(engine):
        asyncio.run(first_run())
    assert row_count(engine) == 0
    asyncio.run(second_run())
    assert stored_ids(engine) == ids(6)


def test_replay_skips_records_the_store_already_has(engine: Engine) -> None:
    """A crash after a replayed batch commits and before its segment is deleted replays it
    again: the store keeps one row per request id and the batch does not fail."""
    insert_records(engine, [record(i) for i in range(5)])
    spool = Spool(spool_directory(StoreConfig(), engine))
    spool.write(spool.reserve(), [record(i) for i in range(10)])

    async def main() -> None:
        w = writer(engine, batch_size=4)
        await w.start()
        await until(lambda: not w.spooling)
        await w.stop()
        assert w.written == 5

    asyncio.run(main())
    assert stored_ids(engine) == ids(10)
    assert insert_records(engine, [record(3)]) == 0


def test_rejected_records_are_quarantined_and_the_rest_written(engine: Engine) -> None:
    metrics = GatewayMetrics()
    bad_status = record(3, status=None)  # NOT NULL
    bad_text = record(6, key_name="\ud800")  # a lone surrogate: not encodable to UTF-8

    async def main() -> None:
        w = writer(engine, batch_size=10, interval=NEVER, metrics=metrics)
        await w.start()
        for i in range(10):
            w.record({3: bad_status, 6: bad_text}.get(i) or record(i))
        await w.flush()
        assert w.spool.quarantined == 2
        w.record(record(10))  # nothing is stuck behind them
        await w.stop()
        assert w.written == 9

    asyncio.run(main())
    assert stored_ids(engine) == [i for i in ids(11) if i not in ("req-3", "req-6")]
    directory = spool_directory(StoreConfig(), engine)
    # read with Python's json: the lone surrogate is kept, as an escape
    lines = (directory / QUARANTINE_FILE).read_bytes().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["record"]["request_id"] for e in entries] == ["req-3", "req-6"]
    assert "NOT NULL" in entries[0]["reason"] and "IntegrityError" in entries[0]["reason"]
    assert "surrogate" in entries[1]["reason"]
    assert "entrepot_ledger_quarantined_records 2.0" in exposed(metrics)
    reopened = Spool(directory)
    reopened.open()
    assert reopened.quarantined == 2


def test_a_store_refusing_every_record_is_an_outage_not_a_quarantine(engine: Engine) -> None:
    """An error that is not about connections (here: a column the table lacks, as when a newer
    replica's migration has not run) but hits every record, a known-good one included, spools the
    records rather than setting them all aside."""
    renamed = "ALTER TABLE usage_records RENAME COLUMN usage_estimated TO {}"

    async def main() -> None:
        w = writer(engine, batch_size=4, interval=NEVER)
        await w.start()
        for i in range(6):
            w.record(record(i))
        with engine.begin() as conn:
            conn.exec_driver_sql(renamed.format("not_yet_migrated"))
        await w.flush()
        assert w.spool.quarantined == 0
        assert w.spool.records == 6
        with engine.begin() as conn:  # the migration ran
            conn.exec_driver_sql(
                renamed.replace("usage_estimated", "not_yet_migrated").format("usage_estimated")
            )
        w._retry.set()
        await until(lambda: not w.spooling)
        await w.stop()

    asyncio.run(main())
    assert stored_ids(engine) == ids(6)


def test_a_lock_held_past_the_busy_timeout_is_an_outage_not_a_rejection(
    engine: Engine, db_path: Path
) -> None:
    """SQLite's "database is locked": the known-good record is refused too, so nothing is set
    aside; the records are spooled and written once the lock is gone."""

    async def main() -> None:
        w = writer(engine, batch_size=4, interval=NEVER)
        for i in range(3):
            w.record(record(i))
        with locked(db_path):
            await w.flush()
        assert (w.spool.quarantined, w.spool.records) == (0, 3)
        await w.start()
        await until(lambda: not w.spooling)
        await w.stop()

    asyncio.run(main())
    assert stored_ids(engine) == ids(3)


@pytest.mark.parametrize("outcome", ["succeeds", "fails"])
def test_memory_stays_bounded_while_a_write_hangs_and_order_holds(
    engine: Engine, db_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """A store that does not answer for a while (here: SQLite's write lock held, which the
    writer waits for) holds one batch; what arrives meanwhile goes to the spool past
    `SPILL_BATCHES` batches, and whether the hung write then succeeds (the lock let go) or fails
    (held past the busy timeout), the ledger ends in the order the records came."""
    batch = 2
    total = 60
    held: list[int] = []
    holder = sqlite3.connect(db_path, isolation_level=None)

    async def main() -> None:
        w = writer(engine, batch_size=batch, interval=NEVER)
        await w.start()
        holder.execute("BEGIN EXCLUSIVE")
        try:
            w.record(record(0))
            w.record(record(1))
            await until(lambda: w._busy == 1)  # the batch is with the store, which waits
            for i in range(2, total):
                w.record(record(i))
                held.append(w.held_records)
                await asyncio.sleep(0)
            await until(lambda: w.spool.records > 0)
            if outcome == "fails":
                await until(lambda: w._busy == 0)  # the hung write gave up: spooled
        finally:
            holder.execute("COMMIT")
        await until(lambda: not w.spooling and w.written == total)
        await w.stop()

    asyncio.run(main())
    holder.close()
    assert max(held) <= SPILL_BATCHES * batch
    assert stored_ids(engine) == ids(total)


def test_spool_round_trips_every_field_and_survives_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    original = [record(i, stream=True, ttft_ms=12, key_id=7, cache_hit=True) for i in range(3)]
    spool.write(spool.reserve(), original)
    reopened = Spool(tmp_path / "spool")
    reopened.open()
    assert (reopened.records, reopened.bytes) == (spool.records, spool.bytes)
    sequence = reopened.next_ready()
    assert sequence is not None
    assert reopened.read(sequence) == original
    reopened.remove(sequence)
    assert (reopened.records, reopened.bytes, reopened.holds_records) == (0, 0, False)
    # numbering continues past what was on disk, so order holds across restarts
    assert reopened.reserve() > sequence


def test_each_spooled_batch_is_fsynced_before_the_write_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    original = os.fsync

    def recording(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        original(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    spool = Spool(tmp_path / "spool")
    spool.write(spool.reserve(), [record(0)])
    segment = str(next((tmp_path / "spool").glob("*.jsonl")))
    assert synced == [segment, str(tmp_path / "spool")]  # the file, then its directory entry


def test_a_torn_tail_is_skipped_and_an_unreadable_line_quarantined_once(tmp_path: Path) -> None:
    """However often the segment is read (each replay the store refuses reads it again), the
    unreadable line is quarantined once: the segment is rewritten without it."""
    spool = Spool(tmp_path / "spool")
    spool.write(spool.reserve(), [record(0), record(1)])
    segment = next((tmp_path / "spool").glob("*.jsonl"))
    good = segment.read_bytes().splitlines()
    segment.write_bytes(good[0] + b"\n" + b"{not json\n" + good[1] + b"\n" + good[0][:20])
    reopened = Spool(tmp_path / "spool")
    reopened.open()
    assert reopened.records == 3  # what the newline count said before reading
    sequence = reopened.next_ready()
    assert sequence is not None
    for _ in range(3):
        assert [r.request_id for r in reopened.read(sequence)] == ["req-0", "req-1"]
    assert reopened.quarantined == 1
    entry = orjson.loads((tmp_path / "spool" / QUARANTINE_FILE).read_bytes())
    assert entry["line"] == "{not json" and "unreadable" in entry["reason"]
    assert segment.read_bytes() == good[0] + b"\n" + good[1] + b"\n"
    assert (reopened.records, reopened.bytes) == (2, segment.stat().st_size)
    assert {p.name for p in (tmp_path / "spool").iterdir()} == {
        QUARANTINE_FILE,
        OWNER_FILE,
        segment.name,
    }


def test_a_reserved_older_place_holds_back_newer_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    older = spool.reserve()
    newer = spool.reserve()
    spool.write(newer, [record(1)])
    assert spool.next_ready() is None  # `older` may still be written
    spool.write(older, [record(0)])
    assert spool.next_ready() == older
    spool.remove(older)
    assert spool.next_ready() == newer


def test_spool_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_engine = create_engine(f"sqlite:///{tmp_path}/data/e.db")
    assert spool_directory(StoreConfig(), sqlite_engine) == tmp_path / "data" / "ledger-spool"
    chosen = StoreConfig(spool_dir=str(tmp_path / "elsewhere"))
    assert spool_directory(chosen, sqlite_engine) == tmp_path / "elsewhere"
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "state"))
    remote = create_engine("postgresql+psycopg://ledger@db.internal/entrepot")
    assert spool_directory(StoreConfig(), remote) == tmp_path / "state" / "ledger-spool"


def test_store_and_spool_both_failing_hold_records_in_bounded_memory(
    engine: Engine, tmp_path: Path
) -> None:
    """The double fault: the database is down and the spool's disk refuses too (here: a file
    stands where the spool directory should be, which stops root as well). Records stay in
    memory up to `HOLD_BATCHES` batches, beyond which they are counted as dropped; when either
    comes back, what was held is written."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = StoreConfig(
        ledger_flush_seconds=NEVER, ledger_batch_size=2, spool_dir=str(blocker / "spool")
    )
    metrics = GatewayMetrics()
    limit = HOLD_BATCHES * 2

    async def main() -> None:
        w = LedgerWriter(engine, config, metrics)
        await w.start()
        with refusing(engine):
            for i in range(limit + 5):
                w.record(record(i))
            await w.flush()
            assert (w.held_records, w.dropped) == (limit, 5)
            assert w.problems() == ["ledger not writable"]
            assert "entrepot_ledger_dropped_records_total 5.0" in exposed(metrics)
        await w.flush()
        assert w.problems() == [] and w.held_records == 0
        await w.stop()

    asyncio.run(main())
    assert stored_ids(engine) == ids(limit)


def test_an_unreadable_spool_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "spool").mkdir()

    def denied(self: Path) -> Iterator[Path]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", denied)  # as root, chmod would not stop the read
    with pytest.raises(ConfigError, match=r"store.spool_dir: cannot read .*: Permission denied"):
        Spool(tmp_path / "spool").open()


def test_processes_sharing_a_spool_directory_each_hold_a_slot(tmp_path: Path) -> None:
    """Two spools open at once on one directory (two workers, or a bench beside a server) never
    number or replay the same segments; what a closed one left is taken over by the next to
    open, and reconcile sees every slot's records."""
    base = tmp_path / "spool"
    first, second = Spool(base), Spool(base)
    first.open()
    second.open()
    assert first.directory == base and second.directory == base / "slot-2"
    for spool, name in ((first, "a"), (second, "b")):
        sequence = spool.reserve()
        assert sequence == 1
        spool.write(sequence, [replace(record(n), request_id=f"{name}-{n}") for n in range(2)])
    assert sorted(r.request_id for r in peek_every_slot(base)) == ["a-0", "a-1", "b-0", "b-1"]
    second.close()
    third = Spool(base)
    third.open()  # slot 2 is free again: claimed, and nothing to take over from slot 1 (held)
    assert third.directory == base / "slot-2" and third.records == 2
    third.close()
    first.close()
    survivor = Spool(base)
    survivor.open()  # both free: slot 1 claimed, slot 2's segments moved into it after its own
    assert survivor.directory == base and survivor.records == 4
    replayed = []
    while (sequence := survivor.next_ready()) is not None:
        replayed += [r.request_id for r in survivor.read(sequence)]
        survivor.remove(sequence)
    assert replayed == ["a-0", "a-1", "b-0", "b-1"]
    assert not list((base / "slot-2").glob("0*.jsonl"))
