"""Writing and summarising usage records."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import operator
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from sqlalchemy import JSON, Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from entrepot.config import CurrencyRates
from entrepot.store.tables import usage_daily, usage_records
from entrepot.types import UsageRecord

Grouping = Literal["key", "model", "day"]
# How a batch reaches the database: COPY into a temporary table, then one INSERT from it
# (PostgreSQL's default), or multi-row INSERT statements (SQLite's, and PostgreSQL's on request).
WriteMethod = Literal["copy", "values"]
ROWS_PER_STATEMENT = 25
# Rows sent between two offers of the processor to other processes (see `_offer_the_core`).
ROWS_BETWEEN_YIELDS = 25
INCOMING = "usage_incoming"

Row = tuple[Any, ...]  # a record's values in column order, as the database takes them
_ROW_COLUMNS = tuple(c.name for c in usage_records.columns if c.name != "id")
_COLUMN_LIST = ", ".join(_ROW_COLUMNS)
_JSON_POSITIONS = tuple(
    i for i, name in enumerate(_ROW_COLUMNS) if isinstance(usage_records.c[name].type, JSON)
)
_CREATED_AT = _ROW_COLUMNS.index("created_at")
_COPY = f"COPY {INCOMING} (id, {_COLUMN_LIST}) FROM STDIN"
# ORDER BY the position in the batch: ids follow the order the records came in.
_MOVE = (
    f"INSERT INTO usage_records ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {INCOMING}"
    " ORDER BY id ON CONFLICT (request_id) DO NOTHING"
)


@dataclass(slots=True)
class UsageSummaryRow:
    """One group's totals; costs stay separate per currency rather than being added up."""

    group: str
    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: dict[str, int] = field(default_factory=dict)


def insert_records(
    engine: Engine,
    records: Sequence[UsageRecord],
    *,
    rollback: bool = False,
    method: WriteMethod | None = None,
) -> int:
    """Write a batch in one transaction; returns how many rows are new.

    Rows are encoded once, in the form the column types would have stored them: converting each
    value through SQLAlchemy's type processors cost about 45 µs a row. On SQLite they are sent
    25 at a time in one INSERT. On PostgreSQL, whose driver parses a long INSERT's placeholders
    in Python (about 100 µs a row), they are streamed with COPY into a temporary table and moved
    in one INSERT … SELECT (about 6 µs a row). Every 25 rows the process offers its core to others.

    A record whose request id is already stored is skipped, not an error: a batch may be written
    twice (replayed from the spool after a crash, or after a commit whose answer was lost), and
    must neither fail nor count twice. `rollback` writes the batch and undoes it, to ask whether
    the store accepts such records at all."""
    encode = record_encoder(engine.dialect.name)
    return insert_rows(engine, [encode(r) for r in records], rollback=rollback, method=method)


def insert_rows(
    engine: Engine,
    rows: Sequence[Row],
    *,
    rollback: bool = False,
    method: WriteMethod | None = None,
) -> int:
    """`insert_records` for records already encoded (`record_encoder`, `json_encoder`)."""
    if not rows:
        return 0
    dialect = engine.dialect
    chosen = method or ("copy" if dialect.name == "postgresql" else "values")
    with engine.connect() as conn:
        if chosen == "copy":
            _prepare_incoming(conn)
        with conn.begin() as transaction:
            if chosen == "copy":
                inserted = _copy(conn, rows)
            else:
                inserted = _insert_values(conn, _row_sql(dialect.paramstyle, dialect.name), rows)
            if rollback:
                transaction.rollback()
    return inserted


def store_unavailable(error: BaseException) -> bool:
    """Whether a failed write means the store cannot take writes now (connection refused or
    lost, database locked or read-only, disk full), as opposed to a batch holding a record the
    store rejects (a constraint, a value out of range, text the driver cannot encode)."""
    return isinstance(
        error,
        OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError | OSError,
    ) or bool(getattr(error, "connection_invalidated", False))


def _insert_values(conn: Connection, row_sql: str, rows: Sequence[Row]) -> int:
    inserted = 0
    for first in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[first : first + ROWS_PER_STATEMENT]
        values = tuple(itertools.chain.from_iterable(chunk))
        inserted += conn.exec_driver_sql(_insert_statement(row_sql, len(chunk)), values).rowcount
        offer_the_core()
    return inserted


def offer_the_core() -> None:
    """Let any other process waiting for this core run now (sched_yield), rather than at the
    end of this one's time slice. The ledger's writer process is woken by the server's, often on
    the core the server needs next: written in one go, a batch kept a request waiting for it
    (p99 at one connection on 2 cores: 3.3–4.3 ms; 1.1–1.5 ms written in pieces of 25 rows)."""
    os.sched_yield()


def _prepare_incoming(conn: Connection) -> None:
    """The session's temporary table for COPY, created once per connection and committed on
    its own (a batch rolled back must not take the table with it). Its rows vanish at each
    commit; it has the ledger's columns and NOT NULL constraints but no unique index, so
    duplicates are left to the INSERT's ON CONFLICT."""
    if conn.info.get(INCOMING):
        return
    with conn.begin():
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {INCOMING} (LIKE usage_records)"
            " ON COMMIT DELETE ROWS"
        )
    conn.info[INCOMING] = True


def _copy(conn: Connection, rows: Sequence[Row]) -> int:
    """COPY through the driver's own cursor (SQLAlchemy has no COPY); its errors are raised as
    SQLAlchemy's, as any statement's would be, so callers can tell an outage from a bad record."""
    fairy = conn.connection
    cursor = fairy.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(_COPY) as copy:
            for position, row in enumerate(rows):
                copy.write_row((position, *row))
                if position % ROWS_BETWEEN_YIELDS == ROWS_BETWEEN_YIELDS - 1:
                    offer_the_core()
        cursor.execute(_MOVE)
        return int(cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as error:
        lost = conn.dialect.is_disconnect(error, fairy.dbapi_connection, cursor)
        if lost:
            conn.invalidate(error)
        raise DBAPIError.instance(
            _COPY,
            None,
            error,
            conn.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from error
    finally:
        cursor.close()


@functools.cache
def _insert_statement(row_sql: str, rows: int) -> str:
    values = ", ".join([row_sql] * rows)
    return (
        f"INSERT INTO usage_records ({_COLUMN_LIST}) VALUES {values}"
        " ON CONFLICT (request_id) DO NOTHING"
    )


@functools.cache
def _row_sql(paramstyle: str, dialect: str) -> str:
    """One row's placeholders in a multi-row INSERT."""
    placeholder = "?" if paramstyle == "qmark" else "%s"
    json_cast = "::json" if dialect == "postgresql" else ""
    return "({})".format(
        ", ".join(
            placeholder + (json_cast if i in _JSON_POSITIONS else "")
            for i in range(len(_ROW_COLUMNS))
        )
    )


@functools.cache
def record_encoder(dialect: str) -> Callable[[UsageRecord], Row]:
    """How a record becomes a row: JSON columns as text, and on SQLite the time as text."""
    fields = operator.attrgetter(*_ROW_COLUMNS)
    sqlite = dialect == "sqlite"

    def encode(record: UsageRecord) -> Row:
        row = list(fields(record))
        if sqlite:
            row[_CREATED_AT] = _sqlite_time(row[_CREATED_AT])
        _json_as_text(row)
        return tuple(row)

    return encode


@functools.cache
def json_encoder(dialect: str) -> Callable[[dict[str, Any]], Row]:
    """How a record sent as JSON (orjson's form of a `UsageRecord`, decoded: the time as ISO
    text, JSON columns as values) becomes a row, without building the record: the ledger's
    writer process receives records so, and a `UsageRecord` costs more to build than to write.
    PostgreSQL reads the ISO time as it is."""
    fields = operator.itemgetter(*_ROW_COLUMNS)
    sqlite = dialect == "sqlite"

    def encode(item: dict[str, Any]) -> Row:
        row = list(fields(item))
        if sqlite:
            row[_CREATED_AT] = _sqlite_time(dt.datetime.fromisoformat(row[_CREATED_AT]))
        _json_as_text(row)
        return tuple(row)

    return encode


def _sqlite_time(moment: dt.datetime) -> str:
    """SQLite has no datetime type: SQLAlchemy stores naive UTC text, which reads and compares
    (created_at >= :since) only if written in exactly its format."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _json_as_text(row: list[Any]) -> None:
    for i in _JSON_POSITIONS:
        if row[i] is not None:
            row[i] = orjson.dumps(row[i]).decode()


_UNNAMED = {"key": "(no key)", "model": "(none)", "day": ""}


def summarise(engine: Engine, by: Grouping) -> list[UsageSummaryRow]:
    """Totals per key, model or UTC day, read from the daily totals a trigger keeps beside the
    ledger (see migration 0007): a few rows per day, however many requests it had."""
    d = usage_daily
    group = {"key": d.c.key_name, "model": d.c.model_alias, "day": d.c.day}[by]
    query = select(
        group.label("grp"),
        d.c.currency,
        func.sum(d.c.requests).label("requests"),
        func.sum(d.c.failed).label("failed"),
        func.sum(d.c.prompt_tokens).label("prompt"),
        func.sum(d.c.completion_tokens).label("completion"),
        func.sum(d.c.cost_nanos).label("cost"),
    ).group_by(group, d.c.currency)
    rows: dict[str, UsageSummaryRow] = {}
    with engine.connect() as conn:
        for result in conn.execute(query):
            name = result.grp or _UNNAMED[by]
            row = rows.setdefault(name, UsageSummaryRow(name))
            row.requests += int(result.requests)
            row.failed += int(result.failed)
            row.prompt_tokens += int(result.prompt)
            row.completion_tokens += int(result.completion)
            if result.currency:
                row.cost_nanos[result.currency] = int(result.cost)
    return sorted(rows.values(), key=lambda row: row.group)


def spend_since(
    engine: Engine,
    *,
    since: dt.datetime,
    currency: str,
    rates: CurrencyRates,
    key_id: int | None = None,
    team: str | None = None,
) -> int:
    """What a key or a team has spent since a moment, in nanos of one currency: the starting
    point of a budget period for a process that did not see the earlier requests.

    Costs in other currencies are converted one record at a time, as the limiter converted each
    when it settled, so a restarted gateway's counter equals the one it replaced (records with
    the same cost are read as one group and multiplied). A cost `rates` cannot convert raises
    `CurrencyRateMissingError`: a budget seeded without it would be understated. Both reads use
    the (key or team, created_at) indices (migration 0007)."""
    t = usage_records
    scope = [t.c.created_at >= since, t.c.cost_nanos.is_not(None)]
    if key_id is not None:
        scope.append(t.c.key_id == key_id)
    if team is not None:
        scope.append(t.c.team == team)
    own = select(func.coalesce(func.sum(t.c.cost_nanos), 0)).where(*scope, t.c.currency == currency)
    foreign = (
        select(t.c.currency, t.c.cost_nanos, func.count())
        .where(*scope, t.c.currency != currency)
        .group_by(t.c.currency, t.c.cost_nanos)
    )
    with engine.connect() as conn:
        total = int(conn.execute(own).scalar_one())
        groups = conn.execute(foreign).all()
    for source, nanos, count in groups:
        total += rates.convert(int(nanos), source, currency) * int(count)
    return total
