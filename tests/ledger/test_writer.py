"""LedgerWriter against a real SQLite file, written by the ledger's own process: batching,
draining on stop, retry, and metrics. Outages, the spool and rejected records have their own
tests in `test_spool.py`; PostgreSQL's, in tests/fleet/test_postgres_ledger.py."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.writer import LedgerWriter
from entrepot.store.db import open_engine
from entrepot.store.writer_process import Rejected, StoreProcess
from entrepot.types import UsageRecord
from tests.ledger.helpers import recorded_batches, refusing, row_count, stored_ids, until

NEVER = 3600.0  # a flush interval no test waits for: only a full batch or stop() writes


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_engine(StoreConfig(url=f"sqlite:///{tmp_path}/t.db"))


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Request ids of every batch the writer hands to the store, in order."""
    with recorded_batches(monkeypatch) as seen:
        yield seen


def record(i: int, model: str = "m", status: int = 200) -> UsageRecord:
    return UsageRecord(
        request_id=f"req-{i}",
        endpoint="chat.completions",
        model_alias=model,
        deployment=f"openai_compatible:{model}",
        prompt_tokens=10,
        completion_tokens=5,
        status=status,
    )


def writer(engine: Engine, batch_size: int, interval: float = NEVER) -> LedgerWriter:
    config = StoreConfig(ledger_flush_seconds=interval, ledger_batch_size=batch_size)
    return LedgerWriter(engine, config, GatewayMetrics())


def test_full_batch_is_written_by_background_task(engine: Engine, batches: list[list[str]]) -> None:
    async def main() -> None:
        w = writer(engine, batch_size=3)
        await w.start()
        for i in range(3):
            w.record(record(i))
        await until(lambda: w.written == 3)
        assert batches == [["req-0", "req-1", "req-2"]]
        assert stored_ids(engine) == ["req-0", "req-1", "req-2"]

        # below the batch size nothing wakes the task: the records wait for the interval
        w.record(record(3))
        w.record(record(4))
        for _ in range(20):
            await asyncio.sleep(0)
        assert w.written == 3
        assert row_count(engine) == 3

        await w.stop()
        assert w.written == 5
        assert batches == [["req-0", "req-1", "req-2"], ["req-3", "req-4"]]

    asyncio.run(main())
    assert stored_ids(engine) == [f"req-{i}" for i in range(5)]


def test_interval_flushes_a_partial_batch(engine: Engine, batches: list[list[str]]) -> None:
    async def main() -> None:
        w = writer(engine, batch_size=100, interval=0.01)
        await w.start()
        w.record(record(0))
        await until(lambda: w.written == 1)
        assert row_count(engine) == 1
        await w.stop()

    asyncio.run(main())
    assert batches == [["req-0"]]


def test_stop_drains_everything_in_batches(engine: Engine, batches: list[list[str]]) -> None:
    async def main() -> None:
        w = writer(engine, batch_size=3)
        for i in range(7):
            w.record(record(i))
        assert row_count(engine) == 0
        await w.stop()
        assert w.written == 7

    asyncio.run(main())
    assert [len(b) for b in batches] == [3, 3, 1]
    assert stored_ids(engine) == [f"req-{i}" for i in range(7)]


@pytest.mark.parametrize("n", [1, 3, 4, 5, 23])
def test_exactly_n_rows_for_n_records(engine: Engine, batches: list[list[str]], n: int) -> None:
    async def main() -> None:
        w = writer(engine, batch_size=4)
        await w.start()
        await asyncio.sleep(0)  # the task is now waiting for a wake-up
        for i in range(n):
            w.record(record(i))
        if n >= 4:  # a full batch woke the task, which drains everything queued
            await until(lambda: w.written == n)
        await w.stop()
        assert w.written == n

    asyncio.run(main())
    assert row_count(engine) == n
    assert stored_ids(engine) == [f"req-{i}" for i in range(n)]
    assert [len(b) for b in batches] == [4] * (n // 4) + ([n % 4] if n % 4 else [])


def test_stop_without_records_writes_nothing(engine: Engine) -> None:
    async def main() -> None:
        w = writer(engine, batch_size=2)
        await w.start()
        await w.stop()
        await w.stop()  # idempotent
        assert w.written == 0

    asyncio.run(main())
    assert row_count(engine) == 0


def test_failed_write_is_spooled_and_written_later_once_in_order(
    engine: Engine, batches: list[list[str]]
) -> None:
    """A write the store refuses for a while loses nothing and counts nothing twice: the records
    wait in the spool and reach the store in their order."""

    async def main() -> None:
        w = writer(engine, batch_size=2, interval=0.01)
        for i in range(3):
            w.record(record(i))
        with refusing(engine):
            await w.flush()  # does not raise: the records are spooled
        assert w.written == 0
        assert w.spooling and w.spool.records == 3
        await w.start()
        await until(lambda: not w.spooling)
        await w.stop()
        assert w.written == 3

    asyncio.run(main())
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert stored_ids(engine) == ["req-0", "req-1", "req-2"]


def test_metrics_observe_every_record(engine: Engine) -> None:
    metrics = GatewayMetrics()

    async def main() -> None:
        w = LedgerWriter(engine, StoreConfig(ledger_batch_size=2), metrics)
        await w.start()
        for i in range(3):
            w.record(record(i, model="alpha"))
        w.record(record(3, model="beta", status=502))
        w.record(UsageRecord(request_id="req-4", endpoint="embeddings", model_alias="typo"))
        await w.stop()

    asyncio.run(main())
    exposed = generate_latest(metrics.registry).decode()
    lines = set(exposed.splitlines())
    chat = 'entrepot_requests_total{endpoint="chat.completions",'
    assert chat + 'model="alpha",status="200"} 3.0' in lines
    assert chat + 'model="beta",status="502"} 1.0' in lines
    # no deployment (an unknown model): counted, but never as a new label value
    assert 'entrepot_requests_total{endpoint="embeddings",model="-",status="200"} 1.0' in lines
    assert 'model="typo"' not in exposed
    assert 'entrepot_tokens_total{kind="prompt",model="alpha"} 30.0' in lines
    assert 'entrepot_tokens_total{kind="completion",model="beta"} 5.0' in lines
    assert row_count(engine) == 5


@pytest.fixture
def slow_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[asyncio.Event, sqlite3.Connection]]:
    """An event set when a write reaches the store, and a connection that can hold SQLite's
    write lock (`BEGIN EXCLUSIVE`), so a write waits until it commits."""
    entered = asyncio.Event()
    original = StoreProcess.write

    async def noticed(self: StoreProcess, records: Sequence[UsageRecord]) -> tuple[int, Rejected]:
        entered.set()
        return await original(self, records)

    monkeypatch.setattr(StoreProcess, "write", noticed)
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    yield entered, holder
    holder.close()


def test_stop_waits_for_a_batch_already_being_written(
    engine: Engine, slow_store: tuple[asyncio.Event, sqlite3.Connection]
) -> None:
    """The store is slow to take a batch (another connection holds SQLite's write lock, which
    the writer waits for): stop lets it complete and counts it, rather than spooling it."""
    entered, holder = slow_store

    async def main() -> None:
        w = writer(engine, batch_size=2)
        await w.start()
        holder.execute("BEGIN EXCLUSIVE")
        w.record(record(0))
        w.record(record(1))
        await entered.wait()
        stopping = asyncio.create_task(w.stop())
        for _ in range(10):
            await asyncio.sleep(0)
        holder.execute("COMMIT")  # the write in progress completes now
        await stopping
        assert w.written == 2
        assert row_count(engine) == 2
        assert not w.spooling

    asyncio.run(main())


def test_a_flush_asked_for_during_a_write_waits_for_it_instead_of_spooling(
    engine: Engine, slow_store: tuple[asyncio.Event, sqlite3.Connection]
) -> None:
    """`/admin/usage` flushes while the writer's own flush is writing: the store is fine, only
    busy, so the second batch goes to the store after the first — not to the spool."""
    entered, holder = slow_store

    async def main() -> None:
        w = writer(engine, batch_size=100)
        await w.start()
        holder.execute("BEGIN EXCLUSIVE")
        w.record(record(0))
        first = asyncio.create_task(w.flush())
        await entered.wait()
        w.record(record(1))
        second = asyncio.create_task(w.flush())
        for _ in range(10):
            await asyncio.sleep(0)
        holder.execute("COMMIT")
        await asyncio.gather(first, second)
        assert (w.written, w.spool.records) == (2, 0)
        assert not w.spooling and row_count(engine) == 2
        await w.stop()

    asyncio.run(main())


def test_stop_right_after_a_batch_fills_returns(engine: Engine) -> None:
    async def main() -> None:
        w = writer(engine, batch_size=2)
        await w.start()
        await asyncio.sleep(0)  # the task is now inside wait_for(wake.wait())
        w.record(record(0))
        w.record(record(1))  # batch full: wake.set()
        stopping = asyncio.create_task(w.stop())
        try:
            await until(stopping.done, attempts=400)
        finally:
            stopping.cancel()
        assert w.written == 2

    asyncio.run(main())


def test_records_arriving_during_a_flush_wait_for_the_next_one(
    engine: Engine, batches: list[list[str]]
) -> None:
    """A flush writes what was queued when it began; otherwise, under steady traffic, it would
    keep writing each newcomer in a transaction of its own."""

    async def arrive() -> None:
        for i in range(300, 310):
            w.record(record(i))
            await asyncio.sleep(0)

    async def main() -> None:
        for i in range(250):
            w.record(record(i))
        arrivals = asyncio.create_task(arrive())
        await w.flush()
        assert w.written == 250
        await arrivals
        await w.flush()

    w = writer(engine, batch_size=100)
    asyncio.run(main())
    assert [len(batch) for batch in batches] == [100, 100, 50, 10]
    assert row_count(engine) == 260
