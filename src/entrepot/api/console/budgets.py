"""Where each key and team stands against its budget: spent in the current period, what is left,
the burn rate, and the day the budget runs out if spending goes on at that rate.

Spend is read as the limiter seeds it (`Gateway.spend_since`: the store's records and those the
ledger has not written yet, in the budget's currency at the configured rates), so the console
and the limiter never disagree. The burn rate is the period's spend over the time it has run
(since the key was created, if later), and at least an hour, so a first request does not
predict the end.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from entrepot.api.gateway import Gateway
from entrepot.config import Budget, Limits
from entrepot.ledger.pricing import nanos_to_amount
from entrepot.limits.limiter import Subject
from entrepot.limits.periods import budget_counter

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

    @property
    def remaining(self) -> Decimal | None:
        return None if self.budget is None else max(self.budget - self.spent, Decimal(0))

    @property
    def used(self) -> float | None:
        """The share of the budget spent (0–1)."""
        if self.budget is None or self.budget == 0:
            return None
        return float(min(self.spent / self.budget, Decimal(1)))


async def standing(
    gateway: Gateway,
    subject: str,
    budget: Budget | None,
    since_created: dt.datetime,
    now: dt.datetime | None = None,
) -> Standing:
    """The standing of `subject` ("key:<id>" or "team:<name>", as the limiter names them);
    without a budget, its spend this month in the base currency, so every key shows its cost."""
    now = now or dt.datetime.now(dt.UTC)
    shown = budget or Budget(
        amount=Decimal(0), currency=gateway.config.currency_rates.base, period="month"
    )
    _, start, end = budget_counter(subject, shown, now)
    spent = nanos_to_amount(
        await gateway.spend_since(Subject(subject, Limits(budget=shown)), start)
    )
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
