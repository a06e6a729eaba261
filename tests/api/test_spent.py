"""Calls that cost without answering (`api/spent.py`) are added onto the request's record once,
in its currency, and machine time is not billed twice."""

from __future__ import annotations

import pytest

from entrepot.api.spent import Spent
from entrepot.config import CurrencyRates
from entrepot.types import UsageRecord


def billed(
    cost: int, price_date: str | None, tokens: int = 3, currency: str = "USD"
) -> UsageRecord:
    record = UsageRecord(request_id="r", endpoint="chat", prompt_tokens=tokens)
    record.completion_tokens, record.cost_nanos, record.currency = tokens, cost, currency
    record.price_date = price_date
    return record


@pytest.mark.parametrize(
    ("answer_date", "spent_date", "total"),
    [
        ("2026-11-01", "2026-11-01", 150),  # both by tokens: added
        ("2026-11-01", None, 150),  # spent by time, answered by tokens: its time added
        (None, "2026-11-01", 150),  # spent by tokens, answered by time: its tokens' cost added
        (None, None, 100),  # both by time: the answer's time since the start covers it
    ],
)
def test_calls_that_gave_no_answer_are_charged_once(
    answer_date: str | None, spent_date: str | None, total: int
) -> None:
    record = billed(100, answer_date)
    spent = Spent(record, 0.0, CurrencyRates())
    spent.records.append(billed(50, spent_date, tokens=2))
    spent.charge()
    assert (record.prompt_tokens, record.completion_tokens, record.cost_nanos) == (5, 5, total)
    spent.charge()  # once only
    assert record.cost_nanos == total


def test_a_failed_request_takes_the_cost_of_its_calls() -> None:
    record = UsageRecord(request_id="r", endpoint="chat")
    spent = Spent(record, 0.0, CurrencyRates())
    spent.records.append(billed(50, "2026-11-01", currency="EUR"))
    spent.charge()
    assert (record.cost_nanos, record.currency, record.price_date) == (50, "EUR", "2026-11-01")


def test_a_cost_in_another_currency_is_converted_at_the_rate_table() -> None:
    rates = CurrencyRates.model_validate(
        {"as_of": "2026-11-01", "base": "USD", "rates": {"EUR": "0.5"}}
    )
    record = billed(100, "2026-11-01")
    spent = Spent(record, 0.0, rates)
    spent.records.append(billed(50, "2026-11-01", currency="EUR"))
    spent.charge()
    assert (record.cost_nanos, record.currency) == (125, "USD")  # a euro is half a dollar
