"""One currency per budget: costs in other currencies are converted at the configured, dated rate
table when they settle, and the ledger is converted the same way when a restarted gateway seeds
the budget — so the counter after a restart equals the one before, to the nano."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from entrepot.config import Budget, Config, CurrencyRates, Limits, StoreConfig
from entrepot.exceptions import CurrencyRateMissingError
from entrepot.ledger.pricing import Cost
from entrepot.limits.counters import MemoryCounters
from entrepot.limits.limiter import Limiter, Subject
from entrepot.store.db import open_engine
from entrepot.store.usage import insert_records, spend_since
from entrepot.types import UsageRecord

NOW = dt.datetime(2026, 11, 17, 12, tzinfo=dt.UTC)
RATES = CurrencyRates.model_validate(
    {"as_of": "2026-11-01", "base": "USD", "rates": {"EUR": "1.08", "CNY": "0.14"}}
)
COUNTER = "key:1:budget:USD:2026-11"
# Costs whose conversions round: 5 EUR nanos are 5.4 USD nanos, so per record they are 5, while
# the sum of two (10.8) would round to 11.
COSTS = [Cost(5, "EUR"), Cost(5, "EUR"), Cost(7, "CNY"), Cost(1_234_567, "EUR"), Cost(3, "USD")]


def test_the_counter_after_a_restart_equals_the_one_before(tmp_path: Path) -> None:
    engine = open_engine(StoreConfig(url=f"sqlite:///{tmp_path}/ledger.db"))
    key = Subject("key:1", Limits(budget=Budget(amount=Decimal(10))))

    async def load(subject: Subject, since: dt.datetime) -> int:
        return spend_since(engine, since=since, currency="USD", rates=RATES, key_id=1)

    async def serve_then_restart() -> tuple[tuple[int, int], tuple[int, int]]:
        counters = MemoryCounters()
        before = Limiter(counters, load, clock=lambda: NOW, rates=RATES)
        records = []
        for i, cost in enumerate(COSTS):
            admission = await before.admit([key], estimated_tokens=1, worst_costs=[cost])
            await before.settle(admission, actual_tokens=1, actual_cost=cost)
            records.append(
                UsageRecord(
                    request_id=f"r{i}",
                    endpoint="chat",
                    created_at=NOW,
                    key_id=1,
                    cost_nanos=cost.nanos,
                    currency=cost.currency,
                )
            )
        insert_records(engine, records)
        restarted_counters = MemoryCounters()
        after = Limiter(restarted_counters, load, clock=lambda: NOW, rates=RATES)
        await after.admit([key], estimated_tokens=1, worst_costs=[])
        return counters.spent(COUNTER), restarted_counters.spent(COUNTER)

    before, after = asyncio.run(serve_then_restart())
    # 5 + 5 + 1 (7 CNY = 0.98 USD) + 1_333_332 (1_333_332.36) + 3
    assert before == (1_333_346, 0)
    assert after == before


def test_a_ledger_cost_with_no_rate_refuses_to_seed(tmp_path: Path) -> None:
    engine = open_engine(StoreConfig(url=f"sqlite:///{tmp_path}/ledger.db"))
    record = UsageRecord(
        request_id="r", endpoint="chat", created_at=NOW, key_id=1, cost_nanos=9, currency="CHF"
    )
    insert_records(engine, [record])
    with pytest.raises(CurrencyRateMissingError, match="CHF"):
        spend_since(engine, since=NOW - dt.timedelta(days=1), currency="USD", rates=RATES, key_id=1)


def test_the_rate_table_is_validated_with_its_date() -> None:
    with pytest.raises(ValueError, match="as_of"):
        CurrencyRates.model_validate({"rates": {"EUR": "1.08"}})
    with pytest.raises(ValueError, match="positive"):
        CurrencyRates.model_validate({"as_of": "2026-11-01", "rates": {"EUR": "0"}})
    with pytest.raises(ValueError, match="three-letter"):
        CurrencyRates.model_validate({"as_of": "2026-11-01", "rates": {"euro": "1.1"}})
    config = Config.model_validate(
        {"currency_rates": {"as_of": "2026-11-01", "rates": {"EUR": 1.08}}}
    )
    assert config.currency_rates.rates["EUR"] == Decimal("1.08")
    assert config.currency_rates.convert(100, "EUR", "USD") == 108
