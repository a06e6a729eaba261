"""The console's rollups (migration 0010) against the ledger they summarise: every column equal
to the sums computed from the records, after a replayed batch too, and for rows already there
when the migration runs; the requests list paged by keyset and filtered."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, inspect, select

from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.rollups import (
    Cursor,
    LedgerFilter,
    Window,
    egress_events,
    latency_by_model,
    ledger_page,
    quantile,
    series,
    totals_by,
)
from entrepot.store.tables import (
    LATENCY_BOUNDS_MS,
    usage_hourly,
    usage_hourly_egress,
    usage_records,
)
from entrepot.store.usage import insert_records
from entrepot.types import UsageRecord
from tests.backing import new_database

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
WINDOW = Window(START, START + dt.timedelta(days=3))
RULE = "data class 'confidential' allows only [local]; deployment 'cloud' is in US"


def records(rng: random.Random, count: int, prefix: str) -> list[UsageRecord]:
    out = []
    for i in range(count):
        status = rng.choice([200, 200, 200, 403, 429, 502])
        denied = status == 403
        excluded = denied or rng.random() < 0.2
        attempts: list[dict[str, Any]] | None = [
            {"deployment": "cloud", "outcome": "excluded", "reason": RULE}
        ]
        if not excluded:  # None: no attempts, which SQLAlchemy writes as JSON null
            outcome = rng.choice(["ok", "skipped", None])
            attempts = outcome and [{"deployment": "local", "outcome": outcome, "reason": None}]
        out.append(
            UsageRecord(
                request_id=f"{prefix}-{i}",
                endpoint=rng.choice(["chat.completions", "responses"]),
                created_at=START + dt.timedelta(seconds=rng.randrange(2 * 86400)),
                key_id=rng.choice([None, 1, 2]),
                key_name=rng.choice([None, "alice", "bob"]),
                team=rng.choice([None, "research"]),
                model_alias=rng.choice([None, "m1", "m2"]),
                jurisdiction=rng.choice([None, "local", "US"]),
                data_class=rng.choice([None, "internal", "confidential"]),
                currency=(currency := rng.choice([None, "USD", "EUR"])),
                cost_nanos=None if currency is None else rng.randrange(10**9),
                prompt_tokens=rng.randrange(1000),
                completion_tokens=rng.randrange(1000),
                latency_ms=rng.choice([0, 25, 26, 999, 1000, 70000, rng.randrange(5000)]),
                ttft_ms=rng.choice([None, 50, rng.randrange(3000)]),
                status=status,
                error_type="egress_denied" if denied else None,
                attempts=attempts,
            )
        )
    return out


def expected(kept: list[UsageRecord]) -> tuple[dict[tuple, dict], dict[tuple, int]]:
    """Both rollups computed the slow way, from the records themselves."""
    hourly: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    egress: dict[tuple, int] = defaultdict(int)
    for r in kept:
        hour = r.created_at.strftime("%Y-%m-%d %H")
        dims = (r.key_name or "", r.team or "", r.model_alias or "")
        group = (hour, *dims, r.endpoint, r.jurisdiction or "", r.data_class or "")
        sums = hourly[(*group, r.status // 100, r.currency or "")]
        sums["requests"] += 1
        sums["prompt_tokens"] += r.prompt_tokens
        sums["completion_tokens"] += r.completion_tokens
        sums["cost_nanos"] += r.cost_nanos or 0
        sums["latency_ms"] += r.latency_ms
        sums["ttft_requests"] += r.ttft_ms is not None
        sums["ttft_ms"] += r.ttft_ms or 0
        for bound in LATENCY_BOUNDS_MS:
            sums[f"latency_le_{bound}"] += r.latency_ms <= bound
            sums[f"ttft_le_{bound}"] += r.ttft_ms is not None and r.ttft_ms <= bound
        for attempt in r.attempts or []:
            if attempt["outcome"] == "excluded":
                outcome = "denied" if r.error_type == "egress_denied" else "rerouted"
                reason = attempt["reason"][:1000]  # the column's length, on any store
                egress[(hour, *dims, r.data_class or "", outcome, reason)] += 1
    return {k: dict(v) for k, v in hourly.items()}, dict(egress)


def stored(engine: Engine) -> tuple[dict[tuple, dict], dict[tuple, int]]:
    keys = [c.name for c in usage_hourly.primary_key.columns]
    with engine.connect() as conn:
        hourly = {
            tuple(row[k] for k in keys): {k: v for k, v in row.items() if k not in keys}
            for row in conn.execute(select(usage_hourly)).mappings()
        }
        egress = {tuple(row[:-1]): row[-1] for row in conn.execute(select(usage_hourly_egress))}
    return hourly, egress


def test_the_rollups_are_the_ledgers_sums_even_after_a_replayed_batch(engine: Engine) -> None:
    rng = random.Random(1)
    first, second = records(rng, 300, "a"), records(rng, 100, "b")
    first[0].attempts = [{"deployment": "cloud", "outcome": "excluded", "reason": "r" * 1500}]
    assert insert_records(engine, first) == 300
    # A batch replayed from the spool: the rows already stored are skipped, and not counted.
    assert insert_records(engine, first[:150] + second) == 100
    want_hourly, want_egress = expected(first + second)
    got_hourly, got_egress = stored(engine)
    assert got_hourly == want_hourly
    assert got_egress == want_egress
    assert any(key[5] == "denied" for key in got_egress)
    assert any(key[5] == "rerouted" for key in got_egress)


def test_migration_0010_rolls_up_the_rows_already_in_the_ledger(
    request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    url = f"sqlite:///{tmp_path}/old.db" if store == "sqlite" else None
    url = url or new_database(request.getfixturevalue("postgres_url"))
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", "entrepot.store:migrations")
    old = create_engine(url)
    with old.begin() as connection:
        alembic.attributes["connection"] = connection
        command.upgrade(alembic, "0009")
    assert "usage_hourly" not in inspect(old).get_table_names()
    rng = random.Random(2)
    before, after = records(rng, 200, "old"), records(rng, 50, "new")
    columns = {column["name"] for column in inspect(old).get_columns("usage_records")}
    with old.begin() as connection:
        connection.execute(
            usage_records.insert(),
            [{k: getattr(r, k) for k in r.__dataclass_fields__ if k in columns} for r in before],
        )
    old.dispose()
    engine = open_engine(StoreConfig(url=url))
    assert stored(engine) == expected(before)
    insert_records(engine, after)  # and counted from then on
    assert stored(engine) == expected(before + after)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_console_queries_add_the_hours_up(engine: Engine) -> None:
    kept = records(random.Random(3), 400, "q")
    insert_records(engine, kept)
    by_day = series(engine, WINDOW, "day", "model")
    assert list(by_day) == ["2026-03-01", "2026-03-02"]
    for day, models in by_day.items():
        for model, totals in models.items():
            mine = [r for r in kept if r.created_at.strftime("%Y-%m-%d") == day]
            mine = [r for r in mine if (r.model_alias or "") == model]
            assert totals.requests == len(mine)
            assert totals.errors == sum(r.status >= 400 for r in mine)
            assert totals.tokens == sum(r.prompt_tokens + r.completion_tokens for r in mine)
            usd = sum(r.cost_nanos or 0 for r in mine if r.currency == "USD")
            assert totals.cost_nanos.get("USD", 0) == usd
    keys = totals_by(engine, WINDOW, "key")
    assert keys["alice"].requests == sum(r.key_name == "alice" for r in kept)
    assert sum(t.requests for t in keys.values()) == len(kept)
    later = Window(START + dt.timedelta(days=1), WINDOW.until)  # a range leaves the rest out
    assert sum(t.requests for t in totals_by(engine, later, "key").values()) == sum(
        r.created_at >= later.since for r in kept
    )
    (m1,) = [row for row in latency_by_model(engine, WINDOW) if row.model == "m1"]
    ok = [r for r in kept if r.model_alias == "m1" and r.status == 200]
    assert m1.requests == len(ok)
    assert m1.mean_ms == sum(r.latency_ms for r in ok) / len(ok)
    (event,) = [e for e in egress_events(engine, WINDOW) if e.outcome == "denied"][:1]
    assert event.reason == RULE


def test_a_quantile_is_read_from_the_cumulative_histogram() -> None:
    # 10 requests: 4 at most 25 ms, 8 at most 50 ms, all 10 at most 100 ms.
    cumulative = [4, 8, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    assert quantile(cumulative, 10, 0.4) == 25
    assert quantile(cumulative, 10, 0.6) == 37.5
    assert quantile(cumulative, 10, 0.95) == 87.5
    assert quantile([0] * 11, 3, 0.5) == float("inf")  # all slower than the last bound


def test_the_requests_list_pages_by_keyset_newest_first_and_filters(engine: Engine) -> None:
    kept = records(random.Random(4), 180, "p")
    for r in kept[:20]:
        r.created_at = START  # ties on created_at are ordered by id
    insert_records(engine, kept)
    with engine.connect() as conn:
        ids = dict(conn.execute(select(usage_records.c.request_id, usage_records.c.id)).all())
    filters = LedgerFilter(model="m1", status_class=2, since=START)
    want = [r for r in kept if r.model_alias == "m1" and r.status == 200]
    want.sort(key=lambda r: (r.created_at, ids[r.request_id]), reverse=True)
    seen: list[str] = []
    cursor: Cursor | None = None
    while True:
        page, cursor = ledger_page(engine, filters, cursor, limit=7)
        seen += [row["request_id"] for row in page]
        if cursor is None:
            break
        cursor = Cursor.parse(cursor.token())
    assert seen == [r.request_id for r in want]
    page, _ = ledger_page(engine, LedgerFilter(key_id=1, data_class="internal"), limit=500)
    chosen = {r.request_id for r in kept if r.key_id == 1 and r.data_class == "internal"}
    assert {row["request_id"] for row in page} == chosen
    assert "attempts" not in page[0] and "findings" not in page[0]
    assert Cursor.parse("not a cursor") is None
