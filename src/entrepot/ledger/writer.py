"""Batched, off-the-hot-path ledger writes.

A request only appends its record to a queue; a background task writes batches every
`ledger_flush_seconds` (or sooner when a batch fills), and shutdown drains the queue, so no
request waits on the database and no record is lost on a clean stop. A crash loses at most the
records of one flush window.

Where a batch is written depends on the database. A networked one is written from a worker
thread, as blocking network I/O must not stall the event loop. SQLite is written on the loop
itself, a hundred rows at a time with a yield between: a local insert costs about 15 µs a row,
while the same writes from a thread cost the loop far more in GIL hand-overs (measured at 16
connections: 115 µs more CPU per request than writing inline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.records import UsageRecord
from entrepot.store.usage import insert_records

log = logging.getLogger("entrepot.ledger")
# Rows per inline write: about 1.5 ms of SQLite work before the loop runs again.
INLINE_ROWS = 100


class LedgerWriter:
    def __init__(
        self,
        engine: Engine,
        config: StoreConfig,
        metrics: GatewayMetrics,
        in_thread: bool | None = None,
    ) -> None:
        """`in_thread`: write from a worker thread; by default, for every database but SQLite."""
        self._engine = engine
        self._interval = config.ledger_flush_seconds
        self._batch_size = config.ledger_batch_size
        self._metrics = metrics
        self._pending: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_thread = engine.dialect.name != "sqlite" if in_thread is None else in_thread
        self.written = 0

    def record(self, record: UsageRecord) -> None:
        self._metrics.observe(record)
        self._pending.append(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def stop(self) -> None:
        """Write everything still queued; called on shutdown after requests have drained.

        The loop is asked to finish rather than cancelled, so a batch already being written
        completes (and is counted, or logged and kept if it fails) before the final flush."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._pending:
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued now. Records that arrive meanwhile wait for the next flush: a
        busy server then writes full batches, instead of chasing each new arrival with a
        transaction of its own (which cost ~100 µs a request)."""
        queued, self._pending = self._pending, []
        size = self._batch_size if self._in_thread else min(self._batch_size, INLINE_ROWS)
        for start in range(0, len(queued), size):
            batch = queued[start : start + size]
            try:
                if self._in_thread:
                    await asyncio.to_thread(insert_records, self._engine, batch)
                else:
                    insert_records(self._engine, batch)
            except Exception:
                log.exception("ledger write failed; %d records kept for retry", len(queued) - start)
                self._pending[:0] = queued[start:]
                raise
            self.written += len(batch)
            if not self._in_thread:
                await asyncio.sleep(0)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
            except Exception:
                await asyncio.sleep(self._interval)
