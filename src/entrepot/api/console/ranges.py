"""The date range and time step the analytics pages share, read from the page's query string
(`?from=2026-11-01&to=2026-11-30&grain=day`): a GET form, so a view can be bookmarked and
nothing changes. A value that cannot be read is named on the page and its default used.

Both dates are whole UTC days and both are included. Hourly steps are limited to
`MAX_HOURLY_DAYS`, so a chart keeps a point per pixel or so; a longer range steps by day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import get_args

from entrepot.ledger.pricing import nanos_to_amount
from entrepot.store.rollups import Grain, Totals, Window

DEFAULT_DAYS = 7
MAX_HOURLY_DAYS = 14
DAY = dt.timedelta(days=1)
# At most this many series on one chart: the rest are added up as OTHER.
MOST_SERIES = 6
OTHER = "(others)"


@dataclass(frozen=True)
class Range:
    first: dt.date
    last: dt.date
    grain: Grain
    problems: tuple[str, ...] = field(default=())

    @property
    def window(self) -> Window:
        since = dt.datetime.combine(self.first, dt.time(), dt.UTC)
        until = dt.datetime.combine(self.last + DAY, dt.time(), dt.UTC)
        return Window(since, until)

    def buckets(self) -> list[str]:
        """Every bucket of the range at its grain, empty ones included, as the rollups spell
        them ("2026-11-30 17", "2026-11-30", "2026-11")."""
        if self.grain == "month":
            months, day = [], self.first
            while day <= self.last:
                months.append(day.strftime("%Y-%m"))
                day = (day.replace(day=1) + 32 * DAY).replace(day=1)
            return months
        days = [self.first + i * DAY for i in range((self.last - self.first).days + 1)]
        if self.grain == "day":
            return [d.isoformat() for d in days]
        return [f"{d.isoformat()} {h:02d}" for d in days for h in range(24)]


def read_range(query: Mapping[str, str], today: dt.date | None = None) -> Range:
    today = today or dt.datetime.now(dt.UTC).date()
    problems: list[str] = []
    last = _date(query, "to", today, problems)
    first = _date(query, "from", last - (DEFAULT_DAYS - 1) * DAY, problems)
    if first > last:
        problems.append(f"from ({first}) is after to ({last}): showing {last} alone")
        first = last
    wanted = query.get("grain") or ("hour" if first == last else "day")
    if wanted not in get_args(Grain):
        problems.append(f"grain must be one of hour, day, month (not {wanted!r}): using day")
        wanted = "day"
    grain: Grain = wanted  # type: ignore[assignment]
    if grain == "hour" and (last - first).days >= MAX_HOURLY_DAYS:
        problems.append(f"hourly steps cover at most {MAX_HOURLY_DAYS} days: using days")
        grain = "day"
    return Range(first, last, grain, tuple(problems))


def _date(query: Mapping[str, str], name: str, default: dt.date, problems: list[str]) -> dt.date:
    text = (query.get(name) or "").strip()
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} must be a date as YYYY-MM-DD (not {text!r}): using {default}")
        return default


def choice(
    query: Mapping[str, str], name: str, allowed: tuple[str, ...], problems: list[str]
) -> str:
    """A query value from a fixed set; the first of them when it is missing or unknown."""
    value = query.get(name) or allowed[0]
    if value not in allowed:
        problems.append(f"{name} must be one of {', '.join(allowed)} (not {value!r})")
        return allowed[0]
    return value


def main_currency(totals: Mapping[str, Totals]) -> str | None:
    """The currency most is spent in, which spend charts are drawn in (others are listed)."""
    spent: dict[str, int] = {}
    for one in totals.values():
        for currency, nanos in one.cost_nanos.items():
            spent[currency] = spent.get(currency, 0) + nanos
    return max(spent, key=lambda c: spent[c]) if spent else None


def amount(totals: Totals, currency: str) -> Decimal:
    return nanos_to_amount(totals.cost_nanos.get(currency, 0))


def leaders(totals: Mapping[str, Totals], most: int = MOST_SERIES) -> list[str]:
    """The groups with the most requests, at most `most` of them."""
    ranked = sorted(totals, key=lambda name: (-totals[name].requests, name))
    return ranked[:most]


def label(name: str, missing: str) -> str:
    """A group's name for a page: the rollups store a missing key, team or class as ""."""
    return name or missing
