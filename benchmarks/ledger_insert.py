"""The ledger on PostgreSQL: sustained insert rate, and the `usage` and budget queries at scale.

    .venv/bin/python benchmarks/ledger_insert.py [--seconds 5] [--rows 10000000]

On a private PostgreSQL server (tests/backing.py: a throwaway cluster, fsync off) with the
production schema (migrations at head: indices, the daily-totals trigger):

1. Usage records written for `--seconds` each way, in batches of 500 as the ledger writes them:
   COPY into a temporary table then one INSERT (the ledger's way on PostgreSQL), multi-row
   INSERT statements (SQLite's way), and through the ledger itself — `LedgerWriter.record()` on
   an event loop, batches encoded and piped to its writer process, which COPYs them.
2. A ledger of `--rows` rows (generated in the database: generate_series, then the indices built
   and the daily totals filled), and the median time of three runs of each read `entrepot usage`,
   `/admin/usage` and budget seeding make — beside the full scan of the ledger that `usage` made
   before it read daily totals.

Bounded: about two and a half minutes at the defaults on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.backing import new_database, start_postgres

from entrepot.config import CurrencyRates, StoreConfig
from entrepot.ledger.metrics import GatewayMetrics
from entrepot.ledger.writer import LedgerWriter
from entrepot.store.db import open_engine
from entrepot.store.tables import usage_records
from entrepot.store.usage import WriteMethod, insert_records, spend_since, summarise
from entrepot.types import UsageRecord

BATCH = 500
LEDGER_WRITER = "ledger writer (process, COPY)"
TARGET = 10_000  # records/s
RATES = CurrencyRates(as_of=dt.date(2026, 1, 1), rates={"EUR": "1.08"})


def records(first: int, count: int) -> list[UsageRecord]:
    """Records as a busy gateway writes them: findings, attempts, a cost, 200 keys."""
    return [
        UsageRecord(
            request_id=f"bench-{i}",
            endpoint="chat.completions",
            key_id=i % 200,
            key_name=f"key-{i % 200}",
            team=f"team-{i % 10}",
            model_alias=f"model-{i % 20}",
            deployment="openai_compatible:perf-eu-primary",
            provider="openai_compatible",
            jurisdiction="eu",
            prompt_tokens=120,
            completion_tokens=48,
            usage_reported=True,
            cost_nanos=624_000,
            currency="EUR",
            price_date="2026-11-01",
            latency_ms=230,
            findings={"email": 1},
            attempts=[{"deployment": "perf-eu-primary", "outcome": "ok", "reason": None}],
        )
        for i in range(first, first + count)
    ]


def direct_rate(engine: Engine, seconds: float, method: WriteMethod) -> tuple[int, float]:
    written = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        written += insert_records(engine, records(written, BATCH), method=method)
    return written, time.perf_counter() - started


def writer_rate(engine: Engine, seconds: float, spool: Path) -> tuple[int, float]:
    """Records handed to the ledger as fast as the event loop allows, until `seconds` of them
    are written: the writer's rate, not the hand-over's."""

    async def run() -> tuple[int, float]:
        config = StoreConfig(
            ledger_batch_size=BATCH, ledger_flush_seconds=0.05, spool_dir=str(spool)
        )
        writer = LedgerWriter(engine, config, GatewayMetrics())
        await writer.start()
        writer.record(records(-1, 1)[0])  # the writer process starts before the clock does
        await writer.flush()
        given = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            for record in records(given, BATCH):
                writer.record(record)
            given += BATCH
            while writer.held_records > 4 * BATCH:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)
        await writer.stop()
        assert writer.written == given + 1, "records missing"
        return given, time.perf_counter() - started

    return asyncio.run(run())


def generate(engine: Engine, rows: int) -> float:
    """`rows` usage records over 90 days, 200 keys in 10 teams using 20 models, 10% in USD
    (the rest EUR), 2% failed; built as a bulk load is: indices dropped, rows inserted, indices
    built again. The daily totals are filled by the trigger, as for any insert."""
    started = time.perf_counter()
    indices = list(usage_records.indexes)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
        for index in indices:
            index.drop(conn)
        conn.exec_driver_sql(
            "ALTER TABLE usage_records DROP CONSTRAINT usage_records_request_id_key"
        )
        conn.execute(
            text(
                """
            INSERT INTO usage_records (request_id, created_at, endpoint, stream, key_id, key_name,
              team, model_alias, deployment, provider, prompt_tokens, completion_tokens,
              reasoning_tokens, cached_tokens, usage_reported, cost_nanos, currency, latency_ms,
              status)
            SELECT 'gen-' || g, now() - (g % 7776000) * interval '1 second', 'chat.completions',
              false, g % 200, 'key-' || (g % 200), 'team-' || (g % 10), 'model-' || (g / 7 % 20),
              'openai_compatible:d', 'openai_compatible', 120, 48, 0, 0, true, 600000 + g % 1000,
              CASE WHEN g % 10 = 0 THEN 'USD' ELSE 'EUR' END, 230,
              CASE WHEN g % 50 = 0 THEN 502 ELSE 200 END
            FROM generate_series(1, :rows) g"""
            ),
            {"rows": rows},
        )
        conn.exec_driver_sql(
            "ALTER TABLE usage_records ADD CONSTRAINT usage_records_request_id_key"
            " UNIQUE (request_id)"
        )
        for index in indices:
            index.create(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE usage_records")
        conn.exec_driver_sql("VACUUM ANALYZE usage_daily")
    return time.perf_counter() - started


def median_seconds(query: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        query()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def full_scan(engine: Engine) -> None:
    """`usage --by key` as it was before migration 0007: every row of the ledger read."""
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "SELECT coalesce(key_name, '(no key)'), currency, count(*),"
            " sum((status >= 400)::int), sum(prompt_tokens), sum(completion_tokens),"
            " sum(cost_nanos) FROM usage_records GROUP BY 1, 2"
        ).all()


def insert_rates(server_url: str, seconds: float) -> tuple[Table, float]:
    """The insert table, and the ledger writer's rate."""
    methods: dict[str, Callable[[Engine], tuple[int, float]]] = {
        "COPY + INSERT … SELECT": lambda e: direct_rate(e, seconds, "copy"),
        "multi-row INSERT": lambda e: direct_rate(e, seconds, "values"),
        LEDGER_WRITER: lambda e: writer_rate(e, seconds, Path(tempfile.mkdtemp())),
    }
    table = Table(f"insert method (batches of {BATCH})", "records", "seconds", "records/s")
    rates: dict[str, float] = {}
    for name, measure in methods.items():
        engine = open_engine(StoreConfig(url=new_database(server_url)))
        count, elapsed = measure(engine)
        engine.dispose()
        rates[name] = count / elapsed
        table.add_row(name, f"{count:,}", f"{elapsed:.1f}", f"{rates[name]:,.0f}")
    return table, rates[LEDGER_WRITER]


def read_times(server_url: str, rows: int) -> Table:
    engine = open_engine(StoreConfig(url=new_database(server_url), statement_timeout_seconds=600))
    built = generate(engine, rows)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    spent = functools.partial(spend_since, engine, since=since, currency="EUR", rates=RATES)
    reads: dict[str, Callable[[], object]] = {
        "usage --by key": lambda: summarise(engine, "key"),
        "usage --by model": lambda: summarise(engine, "model"),
        "usage --by day": lambda: summarise(engine, "day"),
        "spend_since, one key, 30 days": lambda: spent(key_id=7),
        "spend_since, one team, 30 days": lambda: spent(team="team-3"),
        "(before: usage --by key as a full scan)": lambda: full_scan(engine),
    }
    table = Table(f"read at {rows:,} rows (built in {built:.0f} s)", "median ms")
    for name, query in reads.items():
        table.add_row(name, f"{median_seconds(query) * 1000:,.1f}")
    engine.dispose()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per insert method")
    parser.add_argument("--rows", type=int, default=10_000_000, help="ledger size for queries")
    args = parser.parse_args()
    console = Console()
    server = start_postgres()
    try:
        inserts, ledger = insert_rates(server.url, args.seconds)
        console.print(inserts)
        verdict = "met" if ledger >= TARGET else "NOT met"
        console.print(f"ledger writer ≥ {TARGET:,} records/s: {verdict}")
        console.print(f"generating {args.rows:,} rows …")
        console.print(read_times(server.url, args.rows))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
