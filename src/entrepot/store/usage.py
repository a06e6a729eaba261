"""Writing and summarising usage records."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from sqlalchemy import JSON, Engine, Integer, String, func, select
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from entrepot.config import CurrencyRates
from entrepot.store.tables import usage_records
from entrepot.types import UsageRecord

Grouping = Literal["key", "model", "day"]


@dataclass(slots=True)
class UsageSummaryRow:
    """One group's totals; costs stay separate per currency rather than being added up."""

    group: str
    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: dict[str, int] = field(default_factory=dict)


ROWS_PER_STATEMENT = 100


def insert_records(
    engine: Engine, records: Sequence[UsageRecord], *, rollback: bool = False
) -> int:
    """Write a batch as multi-row INSERTs of values encoded here; returns how many rows are new.

    Two costs of the obvious `conn.execute(insert(t), dicts)` showed under load: Core converts
    every value through its type processors (about 45 µs a row), and sqlite3's executemany
    releases and retakes the GIL for every row, each time waiting on the event loop thread. Rows
    are therefore encoded once, in the form the column types would have stored them, and sent a
    hundred at a time in one statement: one GIL hand-over per hundred rows.

    A record whose request id is already stored is skipped, not an error: a batch may be written
    twice (replayed from the spool after a crash, or after a commit whose answer was lost), and
    must neither fail nor count twice. `rollback` writes the batch and undoes it, to ask whether
    the store accepts such records at all."""
    if not records:
        return 0
    row_sql, encode = _row_encoding(engine.dialect.name, engine.dialect.paramstyle)
    rows = [encode(r) for r in records]
    inserted = 0
    with engine.connect() as conn, conn.begin() as transaction:
        for first in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[first : first + ROWS_PER_STATEMENT]
            values = tuple(itertools.chain.from_iterable(chunk))
            result = conn.exec_driver_sql(_insert_statement(row_sql, len(chunk)), values)
            inserted += result.rowcount
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


RowEncoder = Callable[[UsageRecord], tuple[Any, ...]]
_ROW_COLUMNS = tuple(c.name for c in usage_records.columns if c.name != "id")
_JSON_POSITIONS = tuple(
    i for i, name in enumerate(_ROW_COLUMNS) if isinstance(usage_records.c[name].type, JSON)
)
_CREATED_AT = _ROW_COLUMNS.index("created_at")


@functools.cache
def _insert_statement(row_sql: str, rows: int) -> str:
    values = ", ".join([row_sql] * rows)
    return (
        f"INSERT INTO usage_records ({', '.join(_ROW_COLUMNS)}) VALUES {values}"
        " ON CONFLICT (request_id) DO NOTHING"
    )


@functools.cache
def _row_encoding(dialect: str, paramstyle: str) -> tuple[str, RowEncoder]:
    """One row's placeholders, and how a record becomes the values they take."""
    placeholder = "?" if paramstyle == "qmark" else "%s"
    json_cast = "::json" if dialect == "postgresql" else ""
    row_sql = "({})".format(
        ", ".join(
            placeholder + (json_cast if i in _JSON_POSITIONS else "")
            for i in range(len(_ROW_COLUMNS))
        )
    )
    fields = operator.attrgetter(*_ROW_COLUMNS)
    # SQLite has no datetime type: SQLAlchemy stores naive UTC text, which reads and compares
    # (created_at >= :since) only if written in exactly its format.
    naive_text = dialect == "sqlite"

    def encode(record: UsageRecord) -> tuple[Any, ...]:
        row = list(fields(record))
        if naive_text:
            created: dt.datetime = row[_CREATED_AT]
            row[_CREATED_AT] = created.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        for i in _JSON_POSITIONS:
            if row[i] is not None:
                row[i] = orjson.dumps(row[i]).decode()
        return tuple(row)

    return row_sql, encode


def summarise(engine: Engine, by: Grouping) -> list[UsageSummaryRow]:
    t = usage_records
    group = {
        "key": func.coalesce(t.c.key_name, "(no key)"),
        "model": func.coalesce(t.c.model_alias, "(none)"),
        "day": func.substr(func.cast(t.c.created_at, String), 1, 10),
    }[by]
    query = (
        select(
            group.label("grp"),
            t.c.currency,
            func.count().label("requests"),
            func.sum((t.c.status >= 400).cast(Integer)).label("failed"),
            func.coalesce(func.sum(t.c.prompt_tokens), 0).label("prompt"),
            func.coalesce(func.sum(t.c.completion_tokens), 0).label("completion"),
            func.coalesce(func.sum(t.c.cost_nanos), 0).label("cost"),
        )
        .group_by(group, t.c.currency)
        .order_by(group, t.c.currency)
    )
    rows: dict[str, UsageSummaryRow] = {}
    with engine.connect() as conn:
        for result in conn.execute(query):
            row = rows.setdefault(str(result.grp), UsageSummaryRow(str(result.grp)))
            row.requests += int(result.requests)
            row.failed += int(result.failed or 0)
            row.prompt_tokens += int(result.prompt)
            row.completion_tokens += int(result.completion)
            if result.currency is not None:
                row.cost_nanos[result.currency] = int(result.cost)
    return list(rows.values())


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
    `CurrencyRateMissingError`: a budget seeded without it would be understated."""
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
