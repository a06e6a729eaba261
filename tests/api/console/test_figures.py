"""Every figure with its unit and sensible precision; charts as self-contained SVG."""

from __future__ import annotations

from decimal import Decimal

import pytest

from entrepot.api.console import charts, figures


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (0, "USD", "$0"),
        (Decimal("1234.567"), "USD", "$1,234.57"),
        (Decimal("0.000042"), "USD", "$0.0000420"),
        (Decimal("0.5"), "USD", "$0.500"),
        (Decimal("0.0042491"), "EUR", "€0.00425"),
        (Decimal("-0.5"), "USD", "\u2212$0.500"),
        (Decimal("12"), "CNY", "12.00 CNY"),
        (None, "USD", "–"),
    ],
)
def test_money(amount: Decimal | int | None, currency: str, shown: str) -> None:
    assert figures.money(amount, currency) == shown


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(0.42, "0.42 ms"), (38.24, "38.2 ms"), (412.7, "413 ms"), (1250, "1.25 s"), (61234, "61.2 s")],
)
def test_latency(ms: float, shown: str) -> None:
    assert figures.latency(ms) == shown


def test_counts_and_shares() -> None:
    assert figures.count(1234567, "requests") == "1,234,567 requests"
    assert figures.tokens(1) == "1 token"
    assert figures.count(1, "requests") == "1 request"
    assert figures.count(1, "req/min") == "1 req/min"
    assert figures.tokens(12000) == "12,000 tokens"
    assert figures.percent(0) == "0%"
    assert figures.percent(-0.0) == "0%"
    assert figures.percent(1) == "100%"
    assert figures.percent(0.12345) == "12.3%"
    assert figures.number(1234.5678) == "1,235"
    assert figures.number(0.000123456) == "0.000123"


def test_charts_are_self_contained_and_labelled() -> None:
    line = charts.line_chart(
        "Spend per day",
        ["12-01", "12-02", "12-03"],
        [charts.Series("a<b", [0.5, None, 1.5]), charts.Series("c", [1, 2, 3])],
        lambda v: figures.money(v, "USD"),
    )
    assert 'role="img"' in line and 'aria-label="Spend per day"' in line
    assert "a&lt;b" in line and "a<b" not in line
    assert "$3.00" in line  # the top tick, with its unit
    assert "href" not in line and "style=" not in line
    bars = charts.bar_chart("Latency", [("x", 12.0), ("y", 1500.0)], figures.latency)
    assert "1.5 s" in bars and "12 ms" in bars
    assert charts.bar_chart("Empty", [], figures.latency).startswith("<svg")
    errors = charts.line_chart("Errors", ["a", "b"], [charts.Series("x", [0, 1])], str)
    assert ">0.5<" not in errors and ">1<" in errors  # counts get whole ticks
