"""Budget periods: which counter a budget's spend is kept in, from when it counts, and when it
ends. A counter is named after its period's start, so a new period starts a new counter, and old
ones expire rather than being reset."""

from __future__ import annotations

import datetime as dt
import functools

from entrepot.config import Budget

BEGINNING = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def budget_counter(
    subject_name: str, budget: Budget, now: dt.datetime
) -> tuple[str, dt.datetime, dt.datetime | None]:
    """The counter of a subject's budget for the period `now` is in, the period's start (UTC)
    and its end (None: it never ends). Keyed by the period's start, so a new period starts a
    new counter and old ones expire."""
    return period_counter(
        subject_name, budget.currency, budget.period, now.astimezone(dt.UTC).date()
    )


@functools.lru_cache(maxsize=4096)
def period_counter(
    subject_name: str, currency: str, period: str, day: dt.date
) -> tuple[str, dt.datetime, dt.datetime | None]:
    """`budget_counter` for one day: remembered, as every request with a budget asks and the
    answer changes once a day."""
    suffix, start, end = _period_of(period, day)
    return f"{subject_name}:budget:{currency}:{suffix}", start, end


@functools.lru_cache(maxsize=64)
def _period_of(period: str, day: dt.date) -> tuple[str, dt.datetime, dt.datetime | None]:
    """Remembered, as every request with a budget asks and the answer changes once a day."""
    if period == "day":
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return start.strftime("%Y-%m-%d"), start, start + dt.timedelta(days=1)
    if period == "month":
        start = dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        return start.strftime("%Y-%m"), start, end
    return "total", BEGINNING, None
