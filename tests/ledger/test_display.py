"""The formatters every report and table writes figures with."""

from __future__ import annotations

import pytest

from entrepot.api.console import figures
from entrepot.ledger.display import (
    count,
    latency,
    money,
    percent,
    percent_interval,
    signed_percent,
)


@pytest.mark.parametrize(
    ("share", "text"),
    [(0.0, "0%"), (-0.0, "0%"), (-0.004, "0%"), (0.004, "0%"), (0.5, "+50%"), (-0.79, "−79%")],
)
def test_a_signed_zero_has_no_sign(share: float, text: str) -> None:
    assert signed_percent(share) == text


def test_shares_and_their_intervals() -> None:
    assert percent(-0.0) == "0%" and percent(-0.004) == "0%" and percent(0.125) == "12%"
    assert percent(-0.2) == "−20%"
    assert percent_interval(0.12, 0.3) == "[12%–30%]"
    assert percent_interval(-0.79, 0.79, signed=True) == "[−79% – +79%]"
    assert percent_interval(-0.001, 0.0, signed=True) == "[0% – 0%]"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (0.0, "USD", "$0"),
        (0.000123456, "USD", "$0.000123"),
        (0.5, "EUR", "€0.500"),
        (1234.5, "USD", "$1,234.50"),
        (0.00042, "CNY", "0.000420 CNY"),
        (-2.5, "GBP", "−£2.50"),
    ],
)
def test_money_keeps_three_significant_digits_below_one_unit(
    amount: float, currency: str, text: str
) -> None:
    assert money(amount, currency) == text


def test_counts_have_thousands_separators() -> None:
    assert count(1234567) == "1,234,567" and count(0) == "0"


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.42, "0.42 ms"),
        (38.24, "38.2 ms"),
        (412.7, "413 ms"),
        (1250, "1.25 s"),
        (1_234_000, "1,234 s"),
    ],
)
def test_latency_reads_the_same_in_the_terminal_and_the_console(ms: float, text: str) -> None:
    assert latency(ms) == text == figures.latency(ms)
