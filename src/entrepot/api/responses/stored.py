"""Stored responses as the API sees them: one namespace per key (anonymous callers share one of
their own), the configured retention, and the store's synchronous engine kept off the event loop.

Writes are committed in groups: a response is kept before its answer is sent (so a read right
after finds it), and the responses that arrive while one transaction commits share the next one.
One transaction and one worker-thread hand-off per request cost three times the rest of the
request; shared, they cost a fraction.

Expired responses are never returned (every read is bounded by the retention period) and are
deleted by a sweep that runs with a store access at most once every `SWEEP_SECONDS`: conversation
content is data, and is not kept past its period just because nobody asked for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Engine

from entrepot.api.gateway import Gateway
from entrepot.exceptions import NotFoundError
from entrepot.store import responses as store
from entrepot.store.responses import StoredResponse
from entrepot.types import JSON, ApiKey

SWEEP_SECONDS = 60.0
DAY_SECONDS = 86_400
MAX_ID_CHARS = 64

T = TypeVar("T")


def owner_of(key: ApiKey | None) -> str:
    return f"key:{key.id}" if key is not None else "anonymous"


class Archive:
    def __init__(self, engine: Engine, retention_days: int) -> None:
        self.engine = engine
        self.retention = retention_days * DAY_SECONDS
        self._swept_at = -SWEEP_SECONDS
        self._pending: list[tuple[StoredResponse, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def keep(self, owner: str, response: JSON, input_items: list[JSON]) -> None:
        """Return once the response is committed; raises what the store raised for its batch."""
        stored = StoredResponse(
            response["id"], owner, int(response["created_at"]), response, input_items
        )
        done = asyncio.get_running_loop().create_future()
        self._pending.append((stored, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await asyncio.shield(done)

    async def _write_pending(self) -> None:
        """Commit what is pending, batch after batch, until nothing is."""
        while self._pending:
            batch, self._pending = self._pending, []
            rows = [stored for stored, _ in batch]
            try:
                await self._run(partial(self._save, rows))
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def find(self, owner: str, response_id: str) -> StoredResponse:
        """The owner's response; NotFoundError if it is missing, expired or someone else's."""
        found = await self.lookup(owner, response_id)
        if found is None:
            raise NotFoundError(f"Response with id {response_id[:MAX_ID_CHARS]!r} not found.")
        return found

    async def lookup(self, owner: str, response_id: str) -> StoredResponse | None:
        if len(response_id) > MAX_ID_CHARS:
            return None
        return await self._run(
            lambda not_before: store.load(self.engine, response_id, owner, not_before)
        )

    async def forget(self, owner: str, response_id: str) -> None:
        removed = len(response_id) <= MAX_ID_CHARS and await self._run(
            lambda not_before: store.remove(self.engine, response_id, owner, not_before)
        )
        if not removed:
            raise NotFoundError(f"Response with id {response_id[:MAX_ID_CHARS]!r} not found.")

    def _save(self, rows: list[StoredResponse], _not_before: int) -> None:
        store.save(self.engine, rows)

    async def _run(self, operation: Callable[[int], T]) -> T:
        """`operation(not_before)` in a worker thread, after a sweep if one is due."""
        not_before = int(time.time()) - self.retention
        now = time.monotonic()
        sweep_due = now - self._swept_at >= SWEEP_SECONDS
        if sweep_due:
            self._swept_at = now

        def run() -> T:
            if sweep_due:
                store.sweep(self.engine, not_before)
            return operation(not_before)

        return await asyncio.to_thread(run)


_archives: WeakKeyDictionary[Gateway, Archive] = WeakKeyDictionary()


def archive(gateway: Gateway) -> Archive:
    """The gateway's archive, made on first use."""
    found = _archives.get(gateway)
    if found is None:
        found = _archives[gateway] = Archive(
            gateway.engine, gateway.config.responses.retention_days
        )
    return found
