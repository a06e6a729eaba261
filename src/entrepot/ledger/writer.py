"""Batched, off-the-hot-path ledger writes that lose nothing when the store is down.

A request only appends its record to a queue; a background task writes batches every
`ledger_flush_seconds` (or sooner when a batch fills), and shutdown drains the queue, so no
request waits on the database and no record is lost on a clean stop. A crash loses at most the
records of one flush window.

Batches are written by a process of the ledger's own (`store/writer_process.py`), SQLite
included: neither the database's pauses (a commit, a WAL checkpoint) nor the Python that drives
it compete with request handling for the event loop or the interpreter, as they did from a
thread. Every wait on the store is bounded, shutdown included: after `STOP_SECONDS` what the
store has not taken is spooled, and replayed by the next start.

Two kinds of failure are told apart, because they need opposite answers:
- the store cannot take writes (unreachable, locked, read-only): every record is fine, so batches
  go to the spool on local disk (see `spool.py`) and a replay task retries the store with backoff,
  writing the spool back in order. While anything is spooled, new batches queue behind it, so the
  ledger keeps the order requests finished in. Memory stays bounded: while a write hangs (a
  database that does not answer), records beyond `SPILL_BATCHES` batches go to the spool at once.
- the store rejects a record (a constraint, a value out of range): it is found by splitting the
  batch (see `store/batches.py`) and quarantined with the reason, so the rest are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterable

from sqlalchemy import Engine

from entrepot.config import CurrencyRates, StoreConfig
from entrepot.failure_log import FailureLog
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.request_log import log_requests
from entrepot.ledger.spool import Spool, spool_directory
from entrepot.store.writer_process import Rejected, StoreProcess
from entrepot.types import UsageRecord

log = logging.getLogger("entrepot.ledger")

SPILL_BATCHES = 8  # records held in memory while a write hangs, in batches
HOLD_BATCHES = 200  # records held in memory when the local disk refuses the spool too
MAX_RETRY_SECONDS = 5.0  # the longest wait between two attempts to reach a failed store
STOP_SECONDS = 5.0  # how long shutdown waits for the store before spooling what is left


class LedgerWriter:
    def __init__(self, engine: Engine, config: StoreConfig, metrics: GatewayMetrics) -> None:
        self._store = StoreProcess(engine.url.render_as_string(hide_password=False), config)
        self._interval = config.ledger_flush_seconds
        self._batch_size = config.ledger_batch_size
        self._metrics = metrics
        self.spool = Spool(spool_directory(config, engine))
        self.spool.open()  # before any record: new segments are numbered after old ones
        metrics.ledger_backlog = self.backlog
        self._pending: list[UsageRecord] = []
        self._in_flight: dict[int, list[UsageRecord]] = {}  # batches being written or spooled
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._retry = asyncio.Event()
        self._spills: set[asyncio.Task[None]] = set()
        self._busy = 0  # flushes in progress (one writing, the others waiting for it)
        self._flushing = asyncio.Lock()
        self._stranded = False  # the last write reached neither the store nor the spool
        self._stopping = False
        self._store_log = FailureLog(log, "ledger store write")
        self._disk_log = FailureLog(log, "ledger spool write")
        self.written = 0
        self.dropped = 0

    @property
    def spooling(self) -> bool:
        """Records are waiting on local disk for the store: the ledger is behind."""
        return self.spool.holds_records

    @property
    def held_records(self) -> int:
        """Records in memory, written nowhere yet."""
        return len(self._pending)

    def problems(self) -> list[str]:
        """What keeps the ledger from being current, for `/health`."""
        problems = []
        if self.spooling:
            problems.append("ledger spooling")
        if self._stranded:
            problems.append("ledger not writable")
        return problems

    def backlog(self) -> dict[str, int]:
        """What is not (or not yet) in the store, for `/health` and `/metrics`."""
        return {
            "spooled_records": self.spool.records,
            "spooled_bytes": self.spool.bytes,
            "quarantined_records": self.spool.quarantined,
            "dropped_records": self.dropped,
        }

    async def pending_spend(
        self,
        *,
        since: dt.datetime,
        currency: str,
        rates: CurrencyRates,
        key_id: int | None = None,
        team: str | None = None,
    ) -> int:
        """What a key or team spent since `since` in records the store does not have yet —
        queued, being written, or spooled (by an earlier run too) — counted as `spend_since`
        counts the store's. Ask this before the store: a record that reaches the store in
        between is then counted twice, never missed, and a budget errs towards refusing."""
        records = [r for batch in (self._pending, *self._in_flight.values()) for r in batch]
        if self.spool.holds_records:
            records += await asyncio.to_thread(self.spool.peek)
        return spend_of(
            records, since=since, currency=currency, rates=rates, key_id=key_id, team=team
        )

    def record(self, record: UsageRecord) -> None:
        self._metrics.observe(record)
        self._pending.append(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()
            if self._busy and len(self._pending) >= SPILL_BATCHES * self._batch_size:
                self._spill()

    async def start(self) -> None:
        """Replay what an earlier process left in the spool."""
        if self.spool.holds_records:
            log.warning(
                "ledger: %d records spooled by an earlier run; replaying them",
                self.spool.records,
            )
            self._kick_replay()
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def stop(self) -> None:
        """Write everything still queued, to the store or else the spool; called on shutdown
        after requests have drained.

        The loops are asked to finish rather than cancelled, so a batch already being written
        completes (and is counted, or spooled if it fails) before the final flush. The store is
        waited for `STOP_SECONDS` at most, however it fails: what it has not taken by then is
        spooled, so a database that stopped answering cannot hang the shutdown."""
        self._stopping = True
        self._store.finish_by(STOP_SECONDS)
        if self._task is not None:
            self._wake.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*self._spills, return_exceptions=True)
        for _ in range(3):  # more only if the local disk refuses the spool too
            if not self._pending:
                break
            await self.flush()
        if self._pending:
            log.error("ledger: %d records could not be written anywhere", len(self._pending))
        if self._replayer is not None:
            self._retry.set()
            await asyncio.gather(self._replayer, return_exceptions=True)
            self._replayer = None
        await self._store.close()
        self.spool.close()

    async def flush(self) -> None:
        """Write what is queued now. Records that arrive meanwhile wait for the next flush: a
        busy server then writes full batches, instead of chasing each new arrival with a
        transaction of its own (which cost ~100 µs a request). Never raises: what the store
        does not take is spooled."""
        queued, self._pending = self._pending, []
        if not queued:
            return
        log_requests(queued)
        self._busy += 1
        self._in_flight[id(queued)] = queued
        try:
            # One flush at a time: a flush asked for while another writes (`/admin/usage`,
            # shutdown) waits for it, rather than seeing its reservation as an outage and
            # spooling. A write that hangs is `_spill`'s business, not this one's.
            async with self._flushing:
                if self.spool.empty:
                    await self._write(queued)
                else:  # behind what is spooled, to keep the order
                    await self._to_spool(self.spool.reserve(), queued)
        finally:
            self._busy -= 1
            del self._in_flight[id(queued)]
        if self.spool.holds_records:
            self._kick_replay()

    async def _write(self, queued: list[UsageRecord]) -> None:
        # Reserved first: records spilled while this write hangs must replay after these.
        place = self.spool.reserve()
        try:
            for start in range(0, len(queued), self._batch_size):
                batch = queued[start : start + self._batch_size]
                try:
                    written, rejected = await self._store.write(batch)
                except Exception as error:
                    self._store_log.failed(error)
                    await self._to_spool(place, queued[start:])
                    return
                self._store_log.succeeded()
                self._stranded = False
                self.written += written
                await self._quarantine(rejected)
        finally:
            self.spool.release(place)  # unless spooled under it

    async def _to_spool(self, place: int, records: list[UsageRecord]) -> None:
        if not self.spool.holds_records:
            log.warning(
                "ledger: the store is not taking writes; records wait in %s", self.spool.directory
            )
        try:
            await asyncio.to_thread(self.spool.write, place, records)
        except OSError as error:
            # The store and the local disk both refuse: hold the records and try again later.
            self._disk_log.failed(error)
            self._stranded = True
            self.spool.release(place)
            self._pending[:0] = records
            excess = len(self._pending) - HOLD_BATCHES * self._batch_size
            if excess > 0:
                log.error("ledger: store and spool both failing; %d records dropped", excess)
                del self._pending[-excess:]
                self.dropped += excess
            return
        self._disk_log.succeeded()
        self._stranded = False
        self._kick_replay()

    def _spill(self) -> None:
        records, self._pending = self._pending, []
        self._in_flight[id(records)] = records
        task = asyncio.create_task(self._to_spool(self.spool.reserve(), records))
        self._spills.add(task)
        task.add_done_callback(self._spills.discard)
        task.add_done_callback(lambda _: self._in_flight.pop(id(records), None))

    async def _quarantine(self, rejected: Rejected) -> None:
        if not rejected:
            return
        try:
            await asyncio.to_thread(self.spool.quarantine, rejected)
        except OSError as error:
            # Neither the store nor the disk takes them: the log is the last place left.
            for record, reason in rejected:
                log.error(
                    "ledger record lost (%s; quarantine not writable: %s): %r",
                    reason,
                    error,
                    record,
                )
            self.dropped += len(rejected)

    def _kick_replay(self) -> None:
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.create_task(self._replay(), name="ledger-replay")

    async def _replay(self) -> None:
        """Write the spool back to the store, oldest segment first, retrying with backoff while
        the store is still down."""
        delay = self._interval
        replayed = 0
        while not self._stopping and (sequence := self.spool.next_ready()) is not None:
            try:
                replayed += await self._replay_segment(sequence)
            except Exception as error:
                self._store_log.failed(error)
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._retry.wait()
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            self._store_log.succeeded()
            delay = self._interval
        if replayed and self.spool.empty:
            log.info("ledger: spool replayed, %d records written to the store", replayed)

    async def _replay_segment(self, sequence: int) -> int:
        records = await asyncio.to_thread(self.spool.read, sequence)
        inserted = 0
        for start in range(0, len(records), self._batch_size):
            batch = records[start : start + self._batch_size]
            written, rejected = await self._store.write(batch)
            await self._quarantine(rejected)
            inserted += written
            self.written += written
        await asyncio.to_thread(self.spool.remove, sequence)
        return inserted

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
            except Exception:  # a bug, not an outage: those are handled inside
                log.exception("ledger flush failed unexpectedly")


def spend_of(
    records: Iterable[UsageRecord],
    *,
    since: dt.datetime,
    currency: str,
    rates: CurrencyRates,
    key_id: int | None = None,
    team: str | None = None,
) -> int:
    """What `records` say a key or team spent since `since`, in nanos of `currency`: the
    records `spend_since` would count, had the store had them, converted as it converts."""
    total = 0
    for record in records:
        nanos, source = record.cost_nanos, record.currency
        if nanos is None or source is None or record.created_at < since:
            continue
        if (key_id is not None and record.key_id != key_id) or (
            team is not None and record.team != team
        ):
            continue
        total += nanos if source == currency else rates.convert(nanos, source, currency)
    return total
