"""Usage records: exact summaries by key, model and day; migrations that run on every open."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.tables import metadata, usage_records
from entrepot.store.usage import UsageSummaryRow, insert_records, summarise
from entrepot.types import UsageRecord

Totals = tuple[int, int, int, int, dict[str, int]]


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=dt.UTC)


def rec(
    rid: str,
    when: dt.datetime,
    key: str | None,
    model: str | None,
    prompt: int = 0,
    completion: int = 0,
    cost: int | None = None,
    currency: str | None = None,
    status: int = 200,
) -> UsageRecord:
    return UsageRecord(
        request_id=rid,
        endpoint="chat.completions",
        created_at=when,
        key_id=None if key is None else len(key),
        key_name=key,
        model_alias=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_nanos=cost,
        currency=currency,
        status=status,
    )


LEDGER = [
    rec("r1", at(1, 10), "alice", "m1", 100, 50, 1_000_000, "USD"),
    rec("r2", at(2, 9), "alice", "m1", 200, 0, 2_500_000, "USD"),
    rec("r3", at(2, 23, 59), "alice", "m2", status=502),
    rec("r4", at(1, 0), "bob", "m1", 10, 10, 7, "USD", status=429),
    rec("r5", at(2, 12), "bob", "m3", 1, 2, 3_000, "EUR"),
    rec("r6", at(2, 13), None, None, status=404),
]


def by_group(rows: list[UsageSummaryRow]) -> dict[str, Totals]:
    table = {
        r.group: (r.requests, r.failed, r.prompt_tokens, r.completion_tokens, r.cost_nanos)
        for r in rows
    }
    assert len(table) == len(rows), "a group appears twice"
    return table


@pytest.fixture
def ledger(engine: Engine) -> Engine:
    insert_records(engine, LEDGER)
    return engine


def test_empty_ledger_summarises_to_nothing(engine: Engine) -> None:
    for grouping in ("key", "model", "day"):
        assert summarise(engine, grouping) == []


def test_insert_records_writes_every_field(engine: Engine) -> None:
    record = rec("only", at(3, 4, 5), "carol", "m9", 7, 8, 123, "USD", status=201)
    record.stream = True
    record.reasoning_tokens = 3
    record.cached_tokens = 2
    record.usage_reported = True
    record.price_date = "2025-09-29"
    record.latency_ms = 42
    record.ttft_ms = 9
    record.error_type = None
    record.findings = {"email": 2}
    record.attempts = [{"deployment": "a", "outcome": "failed", "reason": "upstream_error"}]
    insert_records(engine, [record])
    with engine.connect() as conn:
        row = conn.execute(select(usage_records)).mappings().one()
    expected = dataclasses.asdict(record)
    assert {k: row[k] for k in expected if k != "created_at"} == {
        k: v for k, v in expected.items() if k != "created_at"
    }
    assert row["created_at"].replace(tzinfo=dt.UTC) == record.created_at


def test_insert_nothing_is_a_no_op(engine: Engine) -> None:
    insert_records(engine, [])
    assert summarise(engine, "key") == []


def test_a_batch_is_one_transaction(engine: Engine) -> None:
    insert_records(engine, [rec("a", at(1, 1), None, None)])
    refused = rec("c", at(1, 1), None, None)
    refused.endpoint = None  # type: ignore[assignment]  # a NOT NULL column
    with pytest.raises(IntegrityError):
        insert_records(engine, [rec("b", at(1, 1), None, None), refused])
    with engine.connect() as conn:
        ids = conn.execute(select(usage_records.c.request_id)).scalars().all()
    assert ids == ["a"]


def test_a_request_id_already_stored_is_skipped_not_an_error(engine: Engine) -> None:
    """A batch written twice (replayed after a crash, or after a commit whose answer was lost)
    neither fails nor counts twice; the count returned is of new rows."""
    assert insert_records(engine, [rec("a", at(1, 1), None, None, prompt=1)]) == 1
    again = [rec("b", at(1, 1), None, None), rec("a", at(1, 1), None, None, prompt=99)]
    assert insert_records(engine, again) == 1
    with engine.connect() as conn:
        rows = conn.execute(select(usage_records.c.request_id, usage_records.c.prompt_tokens))
        assert sorted(tuple(row) for row in rows) == [("a", 1), ("b", 0)]


def test_rollback_writes_nothing(engine: Engine) -> None:
    assert insert_records(engine, [rec("a", at(1, 1), None, None)], rollback=True) == 1
    assert summarise(engine, "key") == []


def test_summary_by_key(ledger: Engine) -> None:
    rows = summarise(ledger, "key")
    assert by_group(rows) == {
        "(no key)": (1, 1, 0, 0, {}),
        "alice": (3, 1, 300, 50, {"USD": 3_500_000}),
        "bob": (2, 1, 11, 12, {"EUR": 3_000, "USD": 7}),
    }
    assert [r.group for r in rows] == sorted(r.group for r in rows)


def test_summary_by_model(ledger: Engine) -> None:
    rows = summarise(ledger, "model")
    assert by_group(rows) == {
        "(none)": (1, 1, 0, 0, {}),
        "m1": (3, 1, 310, 60, {"USD": 3_500_007}),
        "m2": (1, 1, 0, 0, {}),
        "m3": (1, 0, 1, 2, {"EUR": 3_000}),
    }
    assert [r.group for r in rows] == ["(none)", "m1", "m2", "m3"]


def test_summary_by_day(ledger: Engine) -> None:
    rows = summarise(ledger, "day")
    assert by_group(rows) == {
        "2026-01-01": (2, 1, 110, 60, {"USD": 1_000_007}),
        "2026-01-02": (4, 2, 201, 2, {"EUR": 3_000, "USD": 2_500_000}),
    }
    assert [r.group for r in rows] == sorted(r.group for r in rows)


def test_costs_never_mix_currencies(ledger: Engine) -> None:
    totals: dict[str, int] = {}
    for row in summarise(ledger, "key"):
        for currency, nanos in row.cost_nanos.items():
            totals[currency] = totals.get(currency, 0) + nanos
    assert totals == {"USD": 3_500_007, "EUR": 3_000}


def test_failed_counts_status_400_and_above(engine: Engine) -> None:
    statuses = [200, 201, 399, 400, 401, 499, 500, 504]
    insert_records(engine, [rec(f"s{s}", at(5, 5), "k", "m", status=s) for s in statuses])
    (row,) = summarise(engine, "key")
    assert (row.requests, row.failed) == (8, 5)


# --- migrations ---------------------------------------------------------------------------------


def head_revision() -> str:
    config = AlembicConfig()
    config.set_main_option("script_location", "entrepot.store:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_open_twice_is_idempotent_and_at_head(tmp_path: Path) -> None:
    config = StoreConfig(url=f"sqlite:///{tmp_path}/twice.db")
    first = open_engine(config)
    insert_records(first, [rec("kept", at(1, 1), "k", "m", 1, 1, 1, "USD")])
    first.dispose()
    second = open_engine(config)
    assert versions(second) == [head_revision()]
    assert head_revision() == "0012"
    with second.connect() as conn:
        count = conn.execute(select(func.count()).select_from(usage_records)).scalar_one()
    assert count == 1
    assert set(inspect(second).get_table_names()) == {
        "alembic_version",
        "api_keys",
        "bench_evidence",
        "fingerprint_answers",
        "fingerprint_runs",
        "responses",
        "shadow_pairs",
        "usage_daily",
        "usage_hourly",
        "usage_hourly_egress",
        "usage_records",
    }


def test_migrations_produce_exactly_the_declared_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("usage_records")}
    assert {
        "ix_usage_created_at",
        "ix_usage_key_created",
        "ix_usage_team_created",
        "ix_usage_model_alias",
    } <= indexes


def test_sqlite_is_in_wal_mode(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == 5000


def test_default_location_is_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENTREPOT_DATABASE_URL", raising=False)
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "data"))
    engine = open_engine(StoreConfig())
    assert engine.url.database == str(tmp_path / "data" / "entrepot.db")
    assert (tmp_path / "data" / "entrepot.db").exists()
    assert versions(engine) == [head_revision()]
