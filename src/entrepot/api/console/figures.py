"""How the console writes numbers: thousands separators, sensible precision, and always the unit,
so "0.000000 USD" or a bare "1234.5678" never reaches a page. Registered as jinja2 filters of the
same names (`{{ cost | money("USD") }}`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from entrepot.ledger import display

MISSING = "–"


def number(value: float | int | Decimal | None, digits: int = 3) -> str:
    """`ledger.display.number`, or a dash for none."""
    return MISSING if value is None else display.number(value, digits)


def count(value: int | None, unit: str = "") -> str:
    """`1,234 requests`, `1 request`: an integer with its unit (none for a bare count), given
    in the plural."""
    if value is None:
        return MISSING
    if value == 1 and unit.endswith("s"):  # 1 request, 1 error, 1 token
        unit = unit[:-1]
    return f"{value:,} {unit}".rstrip()


def tokens(value: int | None) -> str:
    return count(value, "tokens")


def money(amount: Decimal | float | int | None, currency: str = "USD") -> str:
    """The one money format of every surface (`ledger.display.money`), or a dash for none."""
    return MISSING if amount is None else display.money(amount, currency)


def latency(ms: float | None) -> str:
    """`ledger.display.latency`, or a dash for none."""
    return MISSING if ms is None else display.latency(ms)


def percent(share: float | None, digits: int = 3) -> str:
    """A share (0–1) as a percentage; exact zero and one print as 0% and 100%, never "-0%"."""
    if share is None:
        return MISSING
    value = share * 100
    if value == 0:
        return "0%"
    return f"{number(abs(value), digits) if value > 0 else '-' + number(-value, digits)}%"


def when(moment: dt.datetime | dt.date | None) -> str:
    """A date, or a moment to the minute, in UTC (said once, in the layout)."""
    if moment is None:
        return MISSING
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC)
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.isoformat()


FILTERS = {
    "number": number,
    "count": count,
    "tokens": tokens,
    "money": money,
    "latency": latency,
    "percent": percent,
    "when": when,
}
