"""The ledger's production paths: COPY on PostgreSQL, the daily totals `entrepot usage` reads
(kept by a trigger, filled by migration 0007), and COPY's errors told apart like any statement's.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from entrepot.config import StoreConfig
from entrepot.store.db import open_engine
from entrepot.store.tables import usage_records
from entrepot.store.usage import (
    UsageSummaryRow,
    _copy,
    _prepare_incoming,
    insert_records,
    json_encoder,
    record_encoder,
    store_unavailable,
    summarise,
)
from entrepot.types import UsageRecord
from tests.backing import new_database

KEYS = [None, "alice", "bob"]
MODELS = [None, "m1", "m2"]
CURRENCIES = [None, "USD", "EUR"]


def random_records(rng: random.Random, count: int, prefix: str) -> list[UsageRecord]:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return [
        UsageRecord(
            request_id=f"{prefix}-{i}",
            endpoint="chat.completions",
            created_at=start + dt.timedelta(minutes=rng.randrange(5 * 24 * 60)),
            key_name=rng.choice(KEYS),
            model_alias=rng.choice(MODELS),
            currency=(currency := rng.choice(CURRENCIES)),
            cost_nanos=None if currency is None else rng.randrange(10**9),
            prompt_tokens=rng.randrange(1000),
            completion_tokens=rng.randrange(1000),
            status=rng.choice([200, 200, 429, 502]),
        )
        for i in range(count)
    ]


def summary_from_rows(engine: Engine, by: str) -> dict[str, tuple[int, int, int, int, dict]]:
    """The summary computed the slow way, from every row of the ledger."""
    t = usage_records
    totals: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0, defaultdict(int)])
    with engine.connect() as conn:
        for row in conn.execute(select(t)).mappings():
            group = {
                "key": row["key_name"] or "(no key)",
                "model": row["model_alias"] or "(none)",
                "day": row["created_at"].strftime("%Y-%m-%d"),
            }[by]
            entry = totals[group]
            entry[0] += 1
            entry[1] += row["status"] >= 400
            entry[2] += row["prompt_tokens"]
            entry[3] += row["completion_tokens"]
            if row["currency"]:
                entry[4][row["currency"]] += row["cost_nanos"]
    return {group: (*entry[:4], dict(entry[4])) for group, entry in totals.items()}  # type: ignore[misc]


def as_table(rows: list[UsageSummaryRow]) -> dict[str, tuple[int, int, int, int, dict]]:
    return {
        r.group: (r.requests, r.failed, r.prompt_tokens, r.completion_tokens, r.cost_nanos)
        for r in rows
    }


def test_daily_totals_equal_the_ledger_through_duplicates_and_rollbacks(engine: Engine) -> None:
    rng = random.Random(7)
    batches = [random_records(rng, 120, f"b{n}") for n in range(5)]
    for batch in batches:
        insert_records(engine, batch)
    # replayed batches, a batch half new, and writes undone: none may count twice or at all
    insert_records(engine, batches[0])
    insert_records(engine, batches[1][:60] + random_records(rng, 30, "late"))
    insert_records(engine, random_records(rng, 40, "undone"), rollback=True)
    with pytest.raises(IntegrityError):
        refused = random_records(rng, 1, "refused")[0]
        refused.endpoint = None  # type: ignore[assignment]
        insert_records(engine, [*random_records(rng, 10, "with-refused"), refused])
    for by in ("key", "model", "day"):
        assert as_table(summarise(engine, by)) == summary_from_rows(engine, by)  # type: ignore[arg-type]
    assert sum(r.requests for r in summarise(engine, "day")) == 5 * 120 + 30


@pytest.mark.parametrize("method", ["copy", "values"])
def test_both_write_methods_store_the_same_rows(postgres_url: str, method: str) -> None:
    engine = open_engine(StoreConfig(url=new_database(postgres_url)))
    records = random_records(random.Random(3), 250, "r")
    assert insert_records(engine, records, method=method) == 250  # type: ignore[arg-type]
    assert insert_records(engine, records[:10], method=method) == 0  # type: ignore[arg-type]
    with engine.connect() as conn:
        stored = conn.execute(select(usage_records).order_by(usage_records.c.id)).mappings().all()
    # in the order they came, every field as given
    assert [row["request_id"] for row in stored] == [r.request_id for r in records]
    assert [row["created_at"] for row in stored] == [r.created_at for r in records]
    assert [row["cost_nanos"] for row in stored] == [r.cost_nanos for r in records]
    engine.dispose()


def test_a_connection_lost_under_copy_is_an_outage_and_the_next_batch_reconnects(
    postgres_url: str,
) -> None:
    """COPY goes through the driver's own cursor; its failures must still read as SQLAlchemy's,
    a lost connection as an outage (the ledger spools), never as a rejected record."""
    engine = open_engine(StoreConfig(url=new_database(postgres_url)))
    encode = record_encoder("postgresql")
    rows = [encode(r) for r in random_records(random.Random(2), 5, "lost")]
    with engine.connect() as conn:
        _prepare_incoming(conn)
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        conn.commit()
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        admin.dispose()
        with pytest.raises(DBAPIError) as raised, conn.begin():
            _copy(conn, rows)
    assert store_unavailable(raised.value) and raised.value.connection_invalidated
    insert_records(engine, random_records(random.Random(2), 5, "lost"))
    assert sum(r.requests for r in summarise(engine, "key")) == 5
    engine.dispose()


def test_days_are_utc_days_whatever_the_database_time_zone(postgres_url: str) -> None:
    url = new_database(postgres_url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = url.rsplit("/", 1)[1]
        conn.execute(text(f"ALTER DATABASE {name} SET timezone = 'Pacific/Auckland'"))
    admin.dispose()
    engine = open_engine(StoreConfig(url=url))
    late = dt.datetime(2026, 1, 2, 23, 30, tzinfo=dt.UTC)  # already January 3rd in Auckland
    insert_records(engine, [UsageRecord(request_id="late", endpoint="e", created_at=late)])
    assert [r.group for r in summarise(engine, "day")] == ["2026-01-02"]
    engine.dispose()


def test_migration_0007_totals_the_rows_already_in_the_ledger(
    request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    if store == "sqlite":
        url = f"sqlite:///{tmp_path}/old.db"
    else:
        url = new_database(request.getfixturevalue("postgres_url"))
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", "entrepot.store:migrations")
    old = create_engine(url)
    with old.begin() as connection:
        alembic.attributes["connection"] = connection
        command.upgrade(alembic, "0006")
    records = random_records(random.Random(5), 200, "old")
    columns = {column["name"] for column in inspect(old).get_columns("usage_records")}
    with old.begin() as connection:
        connection.execute(
            usage_records.insert(),
            [{k: v for k, v in vars_of(r).items() if k in columns} for r in records],
        )
    old.dispose()
    engine = open_engine(StoreConfig(url=url))
    for by in ("key", "model", "day"):
        assert as_table(summarise(engine, by)) == summary_from_rows(engine, by)  # type: ignore[arg-type]
    insert_records(engine, random_records(random.Random(6), 50, "new"))  # and counted from then on
    assert as_table(summarise(engine, "key")) == summary_from_rows(engine, "key")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def vars_of(record: UsageRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_record_sent_as_json_becomes_the_same_row(dialect: str) -> None:
    """The ledger's writer process gets records as JSON and builds rows from it without the
    record; the rows must be those the record itself gives, every field."""
    record = UsageRecord(
        request_id="every-field",
        endpoint="responses",
        stream=True,
        created_at=dt.datetime(2026, 2, 3, 4, 5, 6, 7, tzinfo=dt.UTC),
        key_id=3,
        key_name="k",
        model_alias="m",
        requested_model="asked",
        deployment="d",
        provider="p",
        jurisdiction="eu",
        prompt_tokens=1,
        completion_tokens=2,
        reasoning_tokens=3,
        cached_tokens=4,
        usage_reported=True,
        usage_estimated=True,
        cost_nanos=5,
        currency="EUR",
        price_date="2026-01-01",
        latency_ms=6,
        ttft_ms=7,
        status=499,
        error_type="client_closed",
        team="t",
        data_class="internal",
        findings={"email": 2},
        attempts=[{"deployment": "d", "outcome": "ok", "reason": None}],
        cache_hit=True,
        limits_degraded=True,
    )
    from_json = json_encoder(dialect)(orjson.loads(orjson.dumps(record)))
    direct = record_encoder(dialect)(record)
    if dialect == "postgresql":  # the time stays ISO text, which PostgreSQL reads as it is
        at = usage_records.c.keys().index("created_at") - 1  # the rows have no id
        assert dt.datetime.fromisoformat(from_json[at]) == direct[at]
        from_json, direct = from_json[:at] + from_json[at + 1 :], direct[:at] + direct[at + 1 :]
    assert from_json == direct
