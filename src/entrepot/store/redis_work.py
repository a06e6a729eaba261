"""Redis calls that must never fail a request: the shared cache, circuit state and key events.

For these, Redis is an accelerator, not a source of truth a request may wait on: a failed call
is a cache miss, a local circuit decision, or a key change found by the next database refresh.
So failures are logged (once, then as a reminder a minute) and not raised; after one, Redis is
left alone for `RETRY_SECONDS` on the request path, so that a Redis that hangs costs one
request a socket timeout, not every request. Writes that the request need not wait for run as
tracked background tasks, awaited at shutdown so none is lost when the gateway stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from redis.exceptions import RedisError

from entrepot.failure_log import FailureLog

RETRY_SECONDS = 1.0
# What a failing Redis call raises: redis-py's own errors, and a socket's or a timeout's
# (`TimeoutError` is an `OSError`) from below it.
FAILURES = (RedisError, OSError)


class RedisWork:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = FailureLog(logger, what)
        self._down_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        """False for `RETRY_SECONDS` after a failure: callers on the request path skip Redis."""
        return self._down_until <= time.monotonic()

    def failed(self, error: BaseException) -> None:
        self._down_until = time.monotonic() + RETRY_SECONDS
        self.log.failed(error)

    def succeeded(self) -> None:
        self._down_until = 0.0
        self.log.succeeded()

    def spawn(self, call: Coroutine[Any, Any, None]) -> None:
        """Run `call` in the background; its failure is logged, never raised."""
        task = asyncio.create_task(self._run(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        except FAILURES as error:
            self.failed(error)
        else:
            self.succeeded()

    async def drain(self) -> None:
        """Wait for the background writes still running (at shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
