"""How amounts, token counts and shares are written for people: one formatter for each, so the
terminal, the HTML reports and the console never disagree on a figure.

Money keeps three significant digits below one unit ("$0.000123", not "0.000000 USD"), cents
above it, with thousands separators. Shares round first and drop the sign of a zero, so a value
of -0.001 never reads "-0%"; signed shares use a true minus sign (U+2212), and an interval of
signed shares is joined by a spaced en dash ("[−79% – +79%]") so the signs stay readable.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
MINUS = "\u2212"


def money(amount: float | Decimal, currency: str = "USD") -> str:
    """An amount with its currency: a symbol where one is unambiguous, else the ISO code."""
    amount = Decimal(str(amount))  # exact digits, whether a ledger Decimal or a float
    if amount == 0:
        digits = "0"
    elif abs(amount) >= 1:
        digits = f"{abs(amount):,.2f}"
    else:
        decimals = 2 - abs(amount).adjusted()
        digits = f"{abs(amount):.{decimals}f}"
    sign = MINUS if amount < 0 and digits.strip("0.,") else ""
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency}"


def count(value: int) -> str:
    """A count (tokens, requests) with thousands separators."""
    return f"{value:,}"


def percent(share: float) -> str:
    """A share in whole percent; zero (or what rounds to it) has no sign."""
    rounded = round(share * 100)
    return f"{MINUS}{-rounded}%" if rounded < 0 else f"{rounded}%"


def signed_percent(share: float) -> str:
    """A difference of shares with its sign; zero (or what rounds to it) reads "0%"."""
    rounded = round(share * 100)
    if rounded == 0:
        return "0%"
    return f"+{rounded}%" if rounded > 0 else f"{MINUS}{-rounded}%"


def percent_interval(low: float, high: float, *, signed: bool = False) -> str:
    """A 95% interval of shares, "[12%–30%]", or for differences "[−79% – +79%]"."""
    if signed:
        return f"[{signed_percent(low)} – {signed_percent(high)}]"
    return f"[{percent(low)}–{percent(high)}]"


def number(value: float | int | Decimal, digits: int = 3) -> str:
    """A plain figure: whole numbers in full with separators, fractions to `digits` significant
    digits (never more decimals than needed to show them)."""
    decimal = Decimal(str(value))
    if decimal == decimal.to_integral_value():
        return f"{int(decimal):,}"
    if abs(decimal) >= 10 ** (digits - 1):
        return f"{decimal:,.0f}"
    return _significant(decimal, digits).rstrip("0").rstrip(".")


def _significant(value: Decimal, digits: int) -> str:
    """`value` with `digits` significant digits, written out (no exponent), separators added."""
    exponent = value.adjusted() - digits + 1
    rounded = value.quantize(Decimal(1).scaleb(min(exponent, 0)), rounding=ROUND_HALF_EVEN)
    if exponent > 0:
        return f"{rounded:,.0f}"
    return f"{rounded:,.{-exponent}f}"


def latency(ms: float) -> str:
    """Three significant digits in milliseconds below a second ("0.42 ms", "38.2 ms", "413 ms"),
    in seconds above ("1.25 s", "1,234 s"): a gateway's own fraction of a millisecond and a slow
    model's seconds both read at a glance."""
    if ms >= 1000:
        return f"{number(ms / 1000)} s"
    return f"{number(ms)} ms"
