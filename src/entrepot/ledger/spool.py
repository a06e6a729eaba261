"""Where usage records wait while the store cannot take them, and where rejected ones are kept.

The spool is a directory of segments, `<sequence>.jsonl`, one JSON line per record. A segment is
written once, start to end, and made durable (the file and the directory are fsynced) before the
writer lets go of its records; it is deleted only after its records are committed to the store.
A crash between the commit and the delete replays the segment, which is harmless: the store
skips request ids it already holds. A crash while a segment is being written leaves a torn last
line, which reading skips (those records were not yet durable: the same loss as a crash before a
batch is written to the store).

Segments replay in sequence order, and a sequence number is reserved *before* the writer tries
the store: if that write fails, its records are spooled under the older number, so records that
were spilled meanwhile (see the writer) still come after them.

`quarantine.jsonl` keeps each record the store rejected, with the reason, for an operator to fix
and re-import; it is never read back automatically.

Several processes may share one spool directory: the workers of `serve --workers N`, or an
in-process `entrepot bench` beside a running server. Each claims a slot of its own — the directory
itself, or `slot-2`, `slot-3`, … inside it — by holding an exclusive lock on the slot's `.owner`
file for as long as it runs, so no two processes number, replay or delete the same segments. A
process starting takes over the segments of every slot nobody holds (a worker that died, or a
run that ended with records spooled), so nothing waits for its own slot's process to return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.exceptions import ConfigError
from entrepot.ledger.lenient_json import lenient_json
from entrepot.store.db import data_directory
from entrepot.types import UsageRecord

log = logging.getLogger("entrepot.ledger")

SPOOL_DIRNAME = "ledger-spool"
QUARANTINE_FILE = "quarantine.jsonl"
OWNER_FILE = ".owner"
MAX_SLOTS = 1024
_SEGMENT = re.compile(r"^(\d{20})\.jsonl$")
_FIELDS = frozenset(f.name for f in dataclasses.fields(UsageRecord))


def spool_directory(config: StoreConfig, engine: Engine) -> Path:
    """`store.spool_dir`, else beside the SQLite file, else in the data directory."""
    if config.spool_dir:
        return Path(config.spool_dir).expanduser()
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).expanduser().resolve().parent / SPOOL_DIRNAME
    return data_directory() / SPOOL_DIRNAME


def encode_record(record: UsageRecord) -> bytes:
    return orjson.dumps(record) + b"\n"


def decode_record(line: bytes) -> UsageRecord:
    """A record from one spooled line; fields a later version added are left out, fields an
    earlier one lacked take their defaults."""
    data: dict[str, Any] = orjson.loads(line)
    if not isinstance(data, dict) or "request_id" not in data:
        raise ValueError("not a usage record")
    values = {name: value for name, value in data.items() if name in _FIELDS}
    values["created_at"] = dt.datetime.fromisoformat(values["created_at"])
    return UsageRecord(**values)


class Spool:
    """The segments on disk and what they hold. Reservations are made on the event loop and the
    files written from worker threads; one lock keeps the bookkeeping consistent between them."""

    def __init__(self, directory: Path) -> None:
        self.base = directory
        self.directory = directory  # this process's slot, once `open` has claimed one
        self._owner: int | None = None  # the descriptor holding the slot's lock
        self.records = 0
        self.bytes = 0
        self.quarantined = 0
        self._segments: dict[int, tuple[int, int]] = {}  # sequence -> (records, bytes)
        self._reserved: set[int] = set()
        self._next = 1
        self._lock = threading.Lock()

    @property
    def empty(self) -> bool:
        """Nothing spooled and nothing about to be: new records may go straight to the store."""
        return not self._segments and not self._reserved

    @property
    def holds_records(self) -> bool:
        return bool(self._segments)

    def open(self) -> None:
        """Claim a slot, and take stock of what earlier processes left: segments to replay (this
        slot's, and those of every slot nobody holds), quarantined records."""
        try:
            self._claim()
            self._take_stock()
            self._adopt()
        except OSError as error:
            raise ConfigError(
                f"store.spool_dir: cannot read {self.base}: {error.strerror or error}"
            ) from None

    def close(self) -> None:
        """Let go of the slot: another process may now claim it, or take over its segments."""
        if self._owner is not None:
            os.close(self._owner)  # closing the descriptor releases its lock
            self._owner = None

    def _claim(self) -> None:
        """Hold the first free slot. A directory that cannot be created now (the disk refuses)
        leaves the spool unowned in its base, as one process's: writing to it fails as it
        would have anyway, and the records are held in memory (see the writer)."""
        for slot in slots(self.base, every=True):
            try:
                owner = _lock(slot)
            except (NotADirectoryError, FileNotFoundError, PermissionError) as error:
                log.warning("ledger spool %s cannot be claimed: %s", slot, error.strerror)
                return
            if owner is not None:
                self.directory, self._owner = slot, owner
                return
        raise OSError(f"all {MAX_SLOTS} slots are held by running processes")

    def _adopt(self) -> None:
        """Move the segments of slots nobody holds into this one, after its own (the order in
        which they replay matters only within one process's records, which stay in order)."""
        for slot in slots(self.base):
            if slot == self.directory:
                continue
            owner = _lock(slot)
            if owner is None:
                continue  # a running process's: it replays them itself
            try:
                for path in sorted(slot.glob("0*.jsonl")):
                    if _SEGMENT.match(path.name):
                        sequence = self._next
                        self._next += 1
                        os.replace(path, self._path(sequence))
                        data = self._path(sequence).read_bytes()
                        self._add(sequence, data.count(b"\n"), len(data))
                _fsync_directory(self.directory)
            finally:
                os.close(owner)

    def _take_stock(self) -> None:
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            match = _SEGMENT.match(path.name)
            if match:
                data = path.read_bytes()
                sequence = int(match.group(1))
                self._add(sequence, data.count(b"\n"), len(data))
                self._next = max(self._next, sequence + 1)
        quarantine = self.directory / QUARANTINE_FILE
        if quarantine.exists():
            self.quarantined = quarantine.read_bytes().count(b"\n")

    def reserve(self) -> int:
        with self._lock:
            sequence = self._next
            self._next += 1
            self._reserved.add(sequence)
            return sequence

    def release(self, sequence: int) -> None:
        """The reserved place is not needed: its records reached the store."""
        with self._lock:
            self._reserved.discard(sequence)

    def write(self, sequence: int, records: Sequence[UsageRecord]) -> None:
        """Write a segment durably under a reserved sequence number. Raises OSError if the disk
        refuses; the reservation is then kept, so the caller can try again with it."""
        lines: list[bytes] = []
        for record in records:
            try:
                lines.append(encode_record(record))
            except TypeError as error:
                self.quarantine([(record, f"cannot be encoded: {error}")])
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(sequence)
        data = b"".join(lines)
        try:
            _write_durably(path, data, "xb")  # never over a segment of an earlier run
        except FileExistsError:
            raise
        except OSError:
            path.unlink(missing_ok=True)  # a partial segment: these records are kept in memory
            raise
        with self._lock:
            self._reserved.discard(sequence)
            self._add(sequence, len(lines), len(data))

    def next_ready(self) -> int | None:
        """The oldest segment, unless an older reservation may still become one."""
        with self._lock:
            if not self._segments:
                return None
            oldest = min(self._segments)
            if self._reserved and min(self._reserved) < oldest:
                return None
            return oldest

    def read(self, sequence: int) -> list[UsageRecord]:
        """A segment's records. A torn last line (a crash mid-write) is skipped; any other line
        that cannot be read is quarantined rather than replayed. A segment someone deleted
        holds nothing.

        Either way the segment is then rewritten without those lines, so a replay that fails
        (the store still down) and reads the segment again does not quarantine the same lines
        again, nor warn again. Only a crash between the two can repeat a quarantine entry."""
        path = self._path(sequence)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        torn = bool(lines[-1])
        if torn:
            log.warning(
                "ledger spool segment %s ends in a torn line (a crash while it was written); "
                "the records before it are replayed",
                path.name,
            )
        records: list[UsageRecord] = []
        kept: list[bytes] = []
        unreadable: list[tuple[bytes, str]] = []
        for line in lines[:-1]:
            try:
                records.append(decode_record(line))
                kept.append(line)
            except (ValueError, TypeError, KeyError) as error:
                unreadable.append((line, f"unreadable spool line: {error}"))
        if unreadable or torn:
            self._quarantine_lines(unreadable)
            self._rewrite(sequence, kept)
        return records

    def _rewrite(self, sequence: int, lines: list[bytes]) -> None:
        """Replace a segment by `lines`, atomically: a crash leaves the old or the new one."""
        data = b"".join(line + b"\n" for line in lines)
        path = self._path(sequence)
        replacement = path.with_suffix(".rewrite")  # not a segment's name: never replayed
        _write_durably(replacement, data, "wb")
        os.replace(replacement, path)
        _fsync_directory(self.directory)
        with self._lock:
            if sequence in self._segments:
                records, size = self._segments[sequence]
                self.records += len(lines) - records
                self.bytes += len(data) - size
                self._segments[sequence] = (len(lines), len(data))

    def peek(self) -> list[UsageRecord]:
        """Every spooled record, oldest first, without replaying or quarantining anything: what
        the store does not have yet, for a budget seeded from the ledger. Lines that cannot be
        read are skipped (`read` quarantines them when their segment replays)."""
        with self._lock:
            sequences = sorted(self._segments)
        records: list[UsageRecord] = []
        for sequence in sequences:
            try:
                data = self._path(sequence).read_bytes()
            except FileNotFoundError:
                continue  # replayed meanwhile: its records are in the store
            for line in data.split(b"\n")[:-1]:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    records.append(decode_record(line))
        return records

    def remove(self, sequence: int) -> None:
        """The segment's records are in the store."""
        self._path(sequence).unlink(missing_ok=True)
        _fsync_directory(self.directory)
        with self._lock:
            records, size = self._segments.pop(sequence, (0, 0))
            self.records -= records
            self.bytes -= size

    def quarantine(self, rejected: Sequence[tuple[UsageRecord, str]]) -> None:
        """Keep records the store rejected, with the reason, out of the way of the others."""
        entries = []
        for record, reason in rejected:
            log.error("ledger record %s quarantined: %s", record.request_id, reason)
            entries.append(
                {"quarantined_at": dt.datetime.now(dt.UTC), "reason": reason, "record": record}
            )
        self._append_quarantine(entries)

    def _quarantine_lines(self, lines: list[tuple[bytes, str]]) -> None:
        entries = []
        for line, reason in lines:
            log.error("ledger spool line quarantined: %s", reason)
            text = line.decode("utf-8", "replace")
            now = dt.datetime.now(dt.UTC)
            entries.append({"quarantined_at": now, "reason": reason, "line": text})
        self._append_quarantine(entries)

    def _append_quarantine(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        data = b"".join(lenient_json(entry) + b"\n" for entry in entries)
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_durably(self.directory / QUARANTINE_FILE, data, "ab")
        with self._lock:
            self.quarantined += len(entries)

    def _add(self, sequence: int, records: int, size: int) -> None:
        self._segments[sequence] = (records, size)
        self.records += records
        self.bytes += size

    def _path(self, sequence: int) -> Path:
        return self.directory / f"{sequence:020d}.jsonl"


def slots(base: Path, every: bool = False) -> list[Path]:
    """The spool's slots: the directory itself, then `slot-N` inside it — those that exist, or
    with `every` all that may be claimed, in the order they are tried."""
    if every:
        return [base, *(base / f"slot-{n}" for n in range(2, MAX_SLOTS + 1))]
    if not base.is_dir():
        return []
    numbered = [p for p in base.glob("slot-*") if p.name[5:].isdigit() and p.is_dir()]
    return [base, *sorted(numbered, key=lambda p: int(p.name[5:]))]


def peek_every_slot(base: Path) -> list[UsageRecord]:
    """Every record spooled in any slot, without claiming or changing anything: what the store
    does not have yet, for `entrepot reconcile` while servers may be running."""
    records: list[UsageRecord] = []
    for slot in slots(base):
        for path in sorted(slot.glob("0*.jsonl")):
            with contextlib.suppress(FileNotFoundError):  # replayed meanwhile
                for line in path.read_bytes().split(b"\n")[:-1]:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        records.append(decode_record(line))
    return records


def _lock(slot: Path) -> int | None:
    """An exclusive lock on the slot, held by the returned descriptor; None if another process
    (or another spool of this one) holds it."""
    slot.mkdir(parents=True, exist_ok=True)
    owner = os.open(slot / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(owner)
        return None
    return owner


def _write_durably(path: Path, data: bytes, mode: str) -> None:
    """Write and fsync the file, and its directory entry when the file is new."""
    new = not path.exists()
    with path.open(mode) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if new:
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
