"""The ledger's writes to the store, done by a process of their own.

Written from a thread of the server's process, a batch still took the interpreter from request
handling: encoding rows and driving the database driver is Python code, and while a thread runs
Python the event loop waits for its turn (up to the 5 ms switch interval). Measured at 2,500
records a second, the event loop stopped for over 1 ms 296 times in 10 s with a thread, 3 times
with this process. So the server only encodes each batch with orjson (a C call per few dozen
records, the event loop free in between) and pipes it to a child process, which turns the
records into rows, writes them with `write_isolating` and answers with how many rows were new
and which records were rejected. The child's work still takes CPU time (a record costs it about
40 µs on SQLite, 20 µs on PostgreSQL), and the core it is woken on is often the one the server
needs next: it works in pieces of a few dozen rows, offering the core between them
(`offer_the_core`), so a request waits for a piece rather than a batch.

The child runs at normal priority on purpose. At idle priority (SCHED_IDLE) the p99 latency at
one connection on a busy 2-core machine fell from about 4 ms to 0.75 ms, but with every core
busy a batch took seconds instead of a tenth of one — while holding SQLite's write lock, or row
locks of the daily totals that every replica's ledger updates.

A process can also be killed, which a thread stuck in a database call cannot: an answer that does
not come within the bound (`connect_timeout_seconds` + `statement_timeout_seconds` + the child's
start) kills the child, and the batch counts as not written (the ledger spools it; request ids
make a later replay harmless if the store did commit it). The next batch starts a new child. A
server that dies closes the pipe, and its child exits when it reads the end of it.

Frames both ways are a 4-byte big-endian length and a JSON body: first the store's URL and config,
then one array of records per batch; answers are {"written", "rejected": [[index, reason]]} or
{"unavailable": reason}. The child's stdout carries only frames (its file descriptor 1 is pointed
at stderr, where its logs and any library's output go).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import IO, Any

import orjson
from sqlalchemy import Engine

from entrepot.config import StoreConfig
from entrepot.exceptions import StoreUnavailableError
from entrepot.failure_log import describe
from entrepot.store.batches import write_isolating
from entrepot.store.db import engine_for
from entrepot.store.usage import ROWS_BETWEEN_YIELDS, json_encoder, offer_the_core
from entrepot.types import UsageRecord

Rejected = list[tuple[UsageRecord, str]]

ENCODE_CHUNK = 32  # records encoded between two turns of the event loop (about 130 µs)
START_SECONDS = 10.0  # the child's start (imports) and a connection, beyond the store's bounds
CLOSE_SECONDS = 5.0
_HEADER = 4


class StoreProcess:
    """The server's end: one child at a time, one batch at a time, every wait bounded."""

    def __init__(self, url: str, config: StoreConfig) -> None:
        self._hello = orjson.dumps({"url": url, "store": config.model_dump(mode="json")})
        self._bound = config.connect_timeout_seconds + config.statement_timeout_seconds
        self._bound += START_SECONDS
        self._process: asyncio.subprocess.Process | None = None
        self._killed: list[asyncio.subprocess.Process] = []
        self._turn = asyncio.Lock()
        self._deadline: float | None = None
        self._waiting: asyncio.Timeout | None = None  # the bound of the answer awaited now

    def finish_by(self, seconds: float) -> None:
        """Give up on the store `seconds` from now: writes in progress then, or asked later,
        fail as an outage (the ledger spools them). For a bounded shutdown."""
        self._deadline = asyncio.get_running_loop().time() + seconds
        waiting = self._waiting
        if waiting is not None and (waiting.when() or self._deadline) >= self._deadline:
            waiting.reschedule(self._deadline)

    async def write(self, records: Sequence[UsageRecord]) -> tuple[int, Rejected]:
        """Write a batch; returns how many rows are new and the records the store rejected,
        with the reason. Raises StoreUnavailableError if the store cannot take them now."""
        payload, sent, unencodable = await _encode(records)
        written = 0
        refused: list[tuple[int, str]] = []
        if sent:
            async with self._turn:
                answer = await self._ask(payload)
            if "unavailable" in answer:
                raise StoreUnavailableError(answer["unavailable"])
            written = int(answer["written"])
            refused = [(sent[index], reason) for index, reason in answer["rejected"]]
        return written, [(records[i], reason) for i, reason in sorted(unencodable + refused)]

    def kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            self._killed.append(process)  # reaped by close()

    async def close(self) -> None:
        """Let the child finish what it was asked and exit; kill it if it does not."""
        killed, self._killed = self._killed, []
        for dead in killed:
            await dead.wait()
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _ask(self, payload: bytes) -> dict[str, Any]:
        timeout = self._bound
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - asyncio.get_running_loop().time())
            if timeout <= 0:
                raise StoreUnavailableError("the ledger is stopping; the store is not waited for")
        try:
            async with asyncio.timeout(timeout) as self._waiting:
                process = await self._started()
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(len(payload).to_bytes(_HEADER, "big") + payload)
                await process.stdin.drain()
                size = int.from_bytes(await process.stdout.readexactly(_HEADER), "big")
                answer: dict[str, Any] = orjson.loads(await process.stdout.readexactly(size))
                return answer
        except TimeoutError:
            self.kill()
            raise StoreUnavailableError("the store did not answer in time") from None
        except (OSError, asyncio.IncompleteReadError) as error:
            self.kill()
            raise StoreUnavailableError("the ledger's writer process exited") from error
        except BaseException:  # cancelled mid-exchange: the child's answer would go astray
            self.kill()
            raise
        finally:
            self._waiting = None

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert self._process.stdin is not None
            self._process.stdin.write(len(self._hello).to_bytes(_HEADER, "big") + self._hello)
        return self._process


async def _encode(
    records: Sequence[UsageRecord],
) -> tuple[bytes, list[int], list[tuple[int, str]]]:
    """The batch as one JSON array, a few dozen records per turn of the event loop; the
    positions of the records in it; and those of the records that cannot be encoded (text that
    is not Unicode), with the reason."""
    parts: list[bytes] = []
    sent: list[int] = []
    unencodable: list[tuple[int, str]] = []
    for start in range(0, len(records), ENCODE_CHUNK):
        chunk = records[start : start + ENCODE_CHUNK]
        try:
            parts.append(orjson.dumps(chunk)[1:-1])
            sent += range(start, start + len(chunk))
        except orjson.JSONEncodeError:
            for position, record in enumerate(chunk, start):
                try:
                    parts.append(orjson.dumps(record))
                    sent.append(position)
                except orjson.JSONEncodeError as error:
                    unencodable.append((position, f"cannot be encoded: {error}"))
        await asyncio.sleep(0)
    return b"[" + b",".join(part for part in parts if part) + b"]", sent, unencodable


# --- the child --------------------------------------------------------------------------------


def main() -> None:
    """Write batches from stdin until it ends. Ctrl-C in a terminal reaches the whole process
    group: the child leaves stopping to the server, which drains its ledger through it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    frames_in = sys.stdin.buffer
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    hello = _read(frames_in)
    if hello is None:
        return
    settings = orjson.loads(hello)
    engine = engine_for(StoreConfig.model_validate(settings["store"]), settings["url"])
    while (frame := _read(frames_in)) is not None:
        answer = orjson.dumps(_answer(engine, frame))
        frames_out.write(len(answer).to_bytes(_HEADER, "big") + answer)
        frames_out.flush()
    engine.dispose()


def _answer(engine: Engine, frame: bytes) -> dict[str, Any]:
    try:
        encode = json_encoder(engine.dialect.name)
        rows = []
        for position, item in enumerate(orjson.loads(frame)):
            rows.append(encode(item))
            if position % ROWS_BETWEEN_YIELDS == ROWS_BETWEEN_YIELDS - 1:
                offer_the_core()
        written, refused = write_isolating(engine, rows)
    except Exception as error:  # an outage, or a fault here: either way, nothing was written
        return {"unavailable": describe(error)}
    return {"written": written, "rejected": refused}


def _read(stream: IO[bytes]) -> bytes | None:
    header = stream.read(_HEADER)
    if len(header) < _HEADER:
        return None
    return stream.read(int.from_bytes(header, "big"))


if __name__ == "__main__":
    main()
