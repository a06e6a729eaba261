"""Logging for background jobs that keep retrying (key refresh, ledger writes).

An outage makes such a job fail every few seconds; logging each failure would bury everything else
in the log, and logging none hides the outage. So the first failure is logged with its reason, then
at most one reminder per interval saying how many failures it stands for, and the recovery once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from entrepot.exceptions import EntrepotError

REMINDER_SECONDS = 60.0


class FailureLog:
    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        every: float = REMINDER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._every = every
        self._clock = clock
        self._failures = 0
        self._unlogged = 0
        self._logged_at = 0.0

    def failed(self, reason: BaseException) -> None:
        self._failures += 1
        self._unlogged += 1
        now = self._clock()
        if self._failures > 1 and now - self._logged_at < self._every:
            return
        text = describe(reason)
        if self._failures == 1:
            self._logger.warning("%s failed: %s", self._what, text)
        else:
            self._logger.warning(
                "%s still failing (%d failures since the last report): %s",
                self._what,
                self._unlogged,
                text,
            )
        self._logged_at = now
        self._unlogged = 0

    def succeeded(self) -> None:
        if self._failures:
            self._logger.info("%s works again after %d failed attempts", self._what, self._failures)
        self._failures = 0
        self._unlogged = 0


def describe(reason: BaseException) -> str:
    """An error's type and first line."""
    if isinstance(reason, EntrepotError):
        return str(reason)
    # SQLAlchemy appends the statement and its parameters: long, and not the reason.
    first_line = next(iter(str(reason).splitlines()), "")
    return f"{type(reason).__name__}: {first_line}" if first_line else type(reason).__name__
