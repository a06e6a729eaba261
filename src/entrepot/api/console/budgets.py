"""Where each key and team stands against its budget: spent in the current period, what is left,
the burn rate, and the day the budget runs out if spending goes on at that rate.

Spend is read from the hourly rollups (migration 0010: kept in the transaction that writes the
records, so they hold what the ledger holds), one query per budget period and split for the
whole page rather than a sum over the ledger per key: at a million records in the month that sum
would take seconds. Records the ledger has not written yet are added as the limiter adds them
(`LedgerWriter.pending_spend`). Each currency's total is converted at the configured rates once,
where the limiter converts record by record: the two may differ by rounding, a few nanos per
record. The burn rate is the period's spend over the time it has run (since the key was created,
if later), and at least an hour, so a first request does not predict the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from entrepot.api.gateway import Gateway
from entrepot.config import Budget
from entrepot.exceptions import CurrencyRateMissingError
from entrepot.ledger.pricing import nanos_to_amount
from entrepot.limits.periods import budget_counter
from entrepot.store.rollups import Split, Totals, Window, totals_by

MIN_ELAPSED = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
HORIZON_DAYS = 10 * 366  # further than this is "not at this rate"


@dataclass(frozen=True)
class Standing:
    currency: str
    spent: Decimal
    budget: Decimal | None  # None: no budget, the spend of the month shown
    period: str
    period_end: dt.datetime | None
    per_day: Decimal
    runs_out: dt.datetime | None  # at the current rate; None: not before the period ends
    unpriced: tuple[str, ...] = ()  # currencies spent in that have no rate to this one

    @property
    def remaining(self) -> Decimal | None:
        return None if self.budget is None else max(self.budget - self.spent, Decimal(0))

    @property
    def used(self) -> float | None:
        """The share of the budget spent (0–1)."""
        if self.budget is None or self.budget == 0:
            return None
        return float(min(self.spent / self.budget, Decimal(1)))


class Spends:
    """Spend per key name or team since a period's start, from the rollups: read once per
    (start, split) for a whole page."""

    def __init__(self, gateway: Gateway, now: dt.datetime) -> None:
        self.gateway = gateway
        self.now = now
        self._read: dict[tuple[dt.datetime, Split], dict[str, Totals]] = {}

    async def since(self, start: dt.datetime, split: Split, name: str) -> dict[str, int]:
        """Nanos per currency."""
        if (start, split) not in self._read:
            window = Window(start, self.now + dt.timedelta(hours=1))
            engine = self.gateway.engine
            self._read[start, split] = await asyncio.to_thread(totals_by, engine, window, split)
        totals = self._read[start, split].get(name)
        return totals.cost_nanos if totals else {}


async def standing(
    spends: Spends,
    budget: Budget | None,
    since_created: dt.datetime,
    *,
    key: tuple[int, str] | None = None,
    team: str | None = None,
) -> Standing:
    """The standing of a key (`key`: its id and name) or a `team`; without a budget, its spend
    this month in the base currency, so every key shows what it costs."""
    gateway, now = spends.gateway, spends.now
    rates = gateway.config.currency_rates
    shown = budget or Budget(amount=Decimal(0), currency=rates.base, period="month")
    _, start, end = budget_counter("console", shown, now)
    nanos = await gateway.ledger.pending_spend(
        since=start, currency=shown.currency, rates=rates, key_id=key[0] if key else None, team=team
    )
    by_currency = await spends.since(start, "key" if key else "team", key[1] if key else team or "")
    unpriced = []
    for currency, amount in by_currency.items():
        try:
            nanos += rates.convert(amount, currency, shown.currency)
        except CurrencyRateMissingError:
            unpriced.append(currency)
    spent = nanos_to_amount(nanos)
    if since_created.tzinfo is None:  # SQLite keeps UTC without its offset
        since_created = since_created.replace(tzinfo=dt.UTC)
    elapsed = max(now - max(start, since_created), MIN_ELAPSED)
    per_day = spent / Decimal(elapsed / DAY)
    return Standing(
        currency=shown.currency,
        spent=spent,
        budget=budget.amount if budget else None,
        period=shown.period,
        period_end=end,
        per_day=per_day,
        runs_out=_runs_out(budget, spent, per_day, now, end),
        unpriced=tuple(sorted(unpriced)),
    )


def _runs_out(
    budget: Budget | None,
    spent: Decimal,
    per_day: Decimal,
    now: dt.datetime,
    end: dt.datetime | None,
) -> dt.datetime | None:
    if budget is None:
        return None
    if spent >= budget.amount:
        return now
    if per_day <= 0:
        return None
    days = float((budget.amount - spent) / per_day)
    if days > HORIZON_DAYS or (end is not None and days > (end - now) / DAY):
        return None
    return now + dt.timedelta(days=days)
