"""The analytics pages' date range, read from a query string: defaults, limits, and every
mistake named with the value used instead."""

from __future__ import annotations

import datetime as dt

from entrepot.api.console.ranges import read_range
from entrepot.store.rollups import hour_of

TODAY = dt.date(2026, 12, 2)


def test_the_default_is_the_last_seven_days_by_day() -> None:
    shown = read_range({}, TODAY)
    assert (shown.first, shown.last, shown.grain, shown.problems) == (
        dt.date(2026, 11, 26),
        TODAY,
        "day",
        (),
    )
    assert shown.buckets()[0] == "2026-11-26" and len(shown.buckets()) == 7
    assert hour_of(shown.window.since) == "2026-11-26 00"
    assert hour_of(shown.window.until) == "2026-12-03 00"  # the last day included


def test_one_day_is_shown_by_hour_and_months_are_whole() -> None:
    one = read_range({"from": "2026-12-01", "to": "2026-12-01"}, TODAY)
    assert one.grain == "hour" and len(one.buckets()) == 24 and one.buckets()[5] == "2026-12-01 05"
    months = read_range({"from": "2026-01-31", "to": "2026-03-01", "grain": "month"}, TODAY)
    assert months.buckets() == ["2026-01", "2026-02", "2026-03"]


def test_mistakes_are_named_and_defaults_used() -> None:
    shown = read_range({"from": "2025-13-01", "to": "2026-11-30", "grain": "week"}, TODAY)
    assert shown.problems == (
        "from must be a date as YYYY-MM-DD (not '2025-13-01'): using 2026-11-24",
        "grain must be one of hour, day, month (not 'week'): using day",
    )
    backwards = read_range({"from": "2026-12-01", "to": "2026-11-01"}, TODAY)
    assert (backwards.first, backwards.last) == (dt.date(2026, 11, 1), dt.date(2026, 11, 1))
    long = read_range({"from": "2026-09-01", "grain": "hour"}, TODAY)
    assert long.grain == "day"
    assert long.problems == ("hourly steps cover at most 14 days: using days",)
