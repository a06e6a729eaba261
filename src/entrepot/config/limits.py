"""Budgets and rate limits, per key or per team, and `currency_rates:`, the rates a cost in one
currency is charged at to a budget kept in another."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from pydantic import Field, field_validator, model_validator

from entrepot.config.strict import Strict
from entrepot.exceptions import CurrencyRateMissingError


class CurrencyRates(Strict):
    """What one unit of each currency is worth in `base`, as read on `as_of`: a budget is kept in
    one currency, and a cost in another is converted at these rates — or, with no rate, the
    request is refused (`CurrencyRateMissingError`) rather than left out of the budget."""

    as_of: dt.date | None = None
    base: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("rates")
    @classmethod
    def _positive_rates(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, rate in rates.items():
            if len(currency) != 3 or not currency.isascii() or not currency.isupper():
                raise ValueError(f"{currency!r} is not a three-letter currency code like EUR")
            if not rate.is_finite() or rate <= 0:
                raise ValueError(f"the rate for {currency} must be a positive number")
        return rates

    @model_validator(mode="after")
    def _dated(self) -> CurrencyRates:
        if self.rates and self.as_of is None:
            raise ValueError("currency rates need the date they were read (`as_of`)")
        if self.rates.get(self.base, 1) != 1:
            raise ValueError(f"the base currency {self.base} is worth 1 {self.base} by definition")
        return self

    def convert(self, nanos: int, source: str, target: str) -> int:
        """`nanos` of `source` in `target`, rounded half to even: the same rounding wherever a
        cost is converted, so a budget counter and the ledger it is seeded from agree."""
        if source == target:
            return nanos
        missing = [c for c in (source, target) if c != self.base and c not in self.rates]
        if missing:
            needed = ", ".join(missing)
            raise CurrencyRateMissingError(
                f"a cost in {source} cannot be charged to a budget in {target}: the gateway's"
                f" currency_rates (base {self.base}) have no rate for {needed}; an administrator"
                f" must add it, or price the model in {target}"
            )
        worth = Fraction(self.rates.get(source, 1)) / Fraction(self.rates.get(target, 1))
        return round(nanos * worth)


class Budget(Strict):
    amount: Decimal = Field(ge=0, allow_inf_nan=False)
    currency: str = "USD"
    period: Literal["day", "month", "total"] = "month"


class Limits(Strict):
    """Per key or per team; every limit is optional."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    budget: Budget | None = None
