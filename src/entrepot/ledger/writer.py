"""Batched, off-the-hot-path ledger writes.

A request only appends its record to a queue; a background task writes batches every
`ledger_flush_seconds` (or sooner when a batch fills), and shutdown drains the queue, so no
request waits on the database and no record is lost on a clean stop. A crash loses at most the
records of one flush window.

Batches are written from a worker thread, SQLite included: the database's own pauses (a commit,
a WAL checkpoint) then never stall the event loop. Written inline, they were the p99 latency at
one connection (8–12 ms against 3–7 ms from a thread), at no measurable saving in CPU per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.store.usage import insert_records
from entrepot.types import UsageRecord

log = logging.getLogger("entrepot.ledger")


class LedgerWriter:
    def __init__(self, engine: Engine, config: StoreConfig, metrics: GatewayMetrics) -> None:
        self._engine = engine
        self._interval = config.ledger_flush_seconds
        self._batch_size = config.ledger_batch_size
        self._metrics = metrics
        self._pending: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
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
        for start in range(0, len(queued), self._batch_size):
            batch = queued[start : start + self._batch_size]
            try:
                await asyncio.to_thread(insert_records, self._engine, batch)
            except Exception:
                log.exception("ledger write failed; %d records kept for retry", len(queued) - start)
                self._pending[:0] = queued[start:]
                raise
            self.written += len(batch)

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
