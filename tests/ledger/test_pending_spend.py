"""What the ledger has not stored yet still counts when a budget is seeded: records queued in
memory and records spooled while the store was down, by this run or an earlier one. Against a
real SQLite file whose write lock another connection holds (reads go on), as in test_spool.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from entrepot.api.endpoints.chat import CHAT
from entrepot.api.gateway import Gateway
from entrepot.api.in_process import call
from entrepot.config import Config, CurrencyRates, StoreConfig
from entrepot.exceptions import BudgetExceededError
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.writer import LedgerWriter
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore
from entrepot.types import UsageRecord
from tests.conftest import UPSTREAM_KEY, Server, fake_model
from tests.ledger.helpers import until

NEVER = 3600.0
SINCE = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
RATES = CurrencyRates.model_validate({"as_of": "2026-05-01", "rates": {"EUR": "1.10"}})


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "t.db"


@pytest.fixture
def engine(db_path: Path) -> Engine:
    engine = open_engine(StoreConfig(url=f"sqlite:///{db_path}"))

    def quick_busy(connection: Any, _record: Any) -> None:
        connection.execute("PRAGMA busy_timeout=20")

    event.listen(engine, "connect", quick_busy)
    engine.dispose()
    return engine


@contextmanager
def locked(db_path: Path) -> Iterator[None]:
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("COMMIT")
        holder.close()


def spend(i: int, nanos: int, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": f"req-{i}",
        "endpoint": "chat",
        "created_at": SINCE + dt.timedelta(days=1),
        "key_id": 1,
        "team": "research",
        "cost_nanos": nanos,
        "currency": "USD",
        **fields,
    }
    return UsageRecord(**values)


def test_queued_and_spooled_records_count_for_their_key_and_team(
    engine: Engine, db_path: Path
) -> None:
    config = StoreConfig(ledger_flush_seconds=NEVER, ledger_batch_size=100)

    async def pending(writer: LedgerWriter, **subject: Any) -> int:
        return await writer.pending_spend(since=SINCE, currency="USD", rates=RATES, **subject)

    async def main() -> list[int]:
        seen = []
        first = LedgerWriter(engine, config, GatewayMetrics())
        first.record(spend(1, 1_000))
        first.record(spend(2, 2_000, currency="EUR"))  # 2_200 USD
        first.record(spend(3, 4_000, key_id=2, team="other"))
        first.record(spend(4, 8_000, created_at=SINCE - dt.timedelta(seconds=1)))  # before
        first.record(spend(5, 0, cost_nanos=None))  # unpriced
        seen += [await pending(first, key_id=1), await pending(first, team="other")]
        with locked(db_path):
            await first.stop()  # the store refuses: everything goes to the spool
            assert first.spool.records == 5
            restarted = LedgerWriter(engine, config, GatewayMetrics())
            restarted.record(spend(6, 16_000))
            seen += [await pending(restarted, key_id=1), await pending(restarted, team="research")]
            seen.append(await pending(restarted, key_id=3))
        await restarted.start()  # replays the spool now the store takes writes
        await until(lambda: restarted.spool.empty)
        seen.append(await pending(restarted, key_id=1))
        await restarted.stop()
        return seen

    assert asyncio.run(main()) == [3_200, 4_000, 19_200, 19_200, 0, 16_000]


def test_a_restart_with_a_spool_seeds_the_budget_with_what_it_holds(
    tmp_path: Path,
    engine: Engine,
    db_path: Path,
    fake_openai: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key spends its budget while the store is down, so its records are spooled; a gateway
    restarted on the same store and spool (still down) refuses the key at once: its budget was
    seeded from the store and the spool, not from the store alone (which has none of it)."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    price = {"input_per_1m": "1", "output_per_1m": "1", "as_of": "2026-05-01"}
    config = Config.model_validate(
        {
            "store": {"url": f"sqlite:///{db_path}", "ledger_flush_seconds": 0.05},
            "models": [fake_model(fake_openai, "fake/echo", "echo-model", price=price)],
        }
    )
    key, _ = KeyStore(engine).create("spender", None, Decimal("0.0005"), "USD", "month")
    body = {"model": "fake/echo", "messages": [{"role": "user", "content": "one two three"}]}
    body["max_tokens"] = 10

    async def serve(gateway: Gateway, requests: int) -> list[int]:
        """Up to `requests` calls, until the first refusal."""
        statuses: list[int] = []
        while len(statuses) < requests and 402 not in statuses:
            try:
                await call(gateway, CHAT, dict(body), key=key, principal="tests", record_as=None)
                statuses.append(200)
            except BudgetExceededError:
                statuses.append(402)
        return statuses

    async def main() -> tuple[list[int], list[int], int]:
        with locked(db_path):
            first = Gateway(config, engine)
            await first.start()
            before = await serve(first, 500)
            await first.stop()
            spooled = first.ledger.spool.records
            second = Gateway(config, engine)
            await second.start()
            after = await serve(second, 1)
            await second.stop()
        return before, after, spooled

    before, after, spooled = asyncio.run(main())
    assert 200 in before and before[-1] == 402
    assert spooled == len(before)
    assert after == [402]
