"""Rollups the operator console reads: hourly usage totals, and hourly counts of the requests
the egress rules refused or steered away from a deployment, with the rule that fired.

- `usage_hourly` holds, per UTC hour, key, team, model, endpoint, jurisdiction, data class,
  status class (2 for 2xx, 4 for 4xx, …) and currency: requests, tokens, cost, the sums of
  latency and time to first token, and cumulative histograms of both (`latency_le_<ms>`: how
  many took at most that long) from which the console reads p50 and p95.
- `usage_hourly_egress` counts, per UTC hour, key, team, model, data class, outcome and reason,
  the requests the egress rules kept from a deployment: `denied` (no deployment was allowed:
  a 403) or `rerouted` (another deployment or the reroute alias served it). The reason is the
  verdict's sentence — the rule and the deployment, never anything from the request. It is read
  from the record's attempts with outcome `excluded`.

On SQLite both are WITHOUT ROWID tables: the rows of a range of hours are stored together, in
key order, so a page's range is read in one pass rather than a lookup per row (ten times faster).

As in migration 0007, triggers add every inserted record in the transaction that inserts it —
PostgreSQL once per statement over its transition table (upserting in key order, so concurrent
writers never deadlock), SQLite once per row — and this migration fills both tables from the
rows already there. A record skipped by the ledger's ON CONFLICT (a replayed batch) is not
inserted, so no trigger sees it: the rollups stay exactly the ledger's sums.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BOUNDS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
HOURLY_KEYS = (
    "hour, key_name, team, model_alias, endpoint, jurisdiction, data_class, status_class, currency"
)
EGRESS_KEYS = "hour, key_name, team, model_alias, data_class, outcome, reason"
_TEXT_KEYS = ("key_name", "team", "model_alias", "endpoint", "jurisdiction", "data_class")
LATENCY = tuple(f"latency_le_{b}" for b in BOUNDS_MS)
TTFT = tuple(f"ttft_le_{b}" for b in BOUNDS_MS)
TOTALS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
    "latency_ms",
    "ttft_requests",
    "ttft_ms",
    *LATENCY,
    *TTFT,
)


def _add_excluded(table: str, columns: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in columns)


def _hourly_select(hour: str, source: str, count: str = "count(*)") -> str:
    """Each group's totals over `source` (the ledger, or a statement's inserted rows)."""
    keys = ", ".join(f"coalesce({k}, '')" for k in _TEXT_KEYS)
    latency = ", ".join(f"sum(CASE WHEN latency_ms <= {b} THEN 1 ELSE 0 END)" for b in BOUNDS_MS)
    ttft = ", ".join(f"sum(CASE WHEN ttft_ms <= {b} THEN 1 ELSE 0 END)" for b in BOUNDS_MS)
    return f"""
        SELECT {hour}, {keys}, status / 100, coalesce(currency, ''),
               {count}, sum(prompt_tokens), sum(completion_tokens),
               coalesce(sum(cost_nanos), 0), sum(latency_ms), count(ttft_ms),
               coalesce(sum(ttft_ms), 0), {latency}, {ttft}
        FROM {source} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"""


def _egress_select(hour: str, source: str, elements: str, field: str) -> str:
    """Per group and reason, how many records had a deployment excluded by the egress rules."""
    outcome = "CASE WHEN error_type = 'egress_denied' THEN 'denied' ELSE 'rerouted' END"
    return f"""
        SELECT {hour}, coalesce(key_name, ''), coalesce(team, ''), coalesce(model_alias, ''),
               coalesce(data_class, ''), {outcome}, substr({field.format("reason")}, 1, 1000),
               count(DISTINCT request_id)
        FROM {source}, {elements}
        WHERE {field.format("outcome")} = 'excluded' AND {field.format("reason")} IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5, 6, 7"""


POSTGRES_HOUR = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"
# A row written through SQLAlchemy without attempts holds JSON null, not SQL NULL: not an array.
POSTGRES_ELEMENTS = (
    "json_array_elements(CASE WHEN json_typeof(attempts) = 'array' THEN attempts END) AS attempt"
)
POSTGRES_FIELD = "(attempt ->> '{}')"
POSTGRES_TRIGGER = f"""
CREATE FUNCTION usage_hourly_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_hourly ({HOURLY_KEYS}, {", ".join(TOTALS)})
    {_hourly_select(POSTGRES_HOUR, "added")} ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ON CONFLICT ({HOURLY_KEYS}) DO UPDATE SET {_add_excluded("usage_hourly", TOTALS)};
    INSERT INTO usage_hourly_egress ({EGRESS_KEYS}, requests)
    {_egress_select(POSTGRES_HOUR, "added", POSTGRES_ELEMENTS, POSTGRES_FIELD)}
    ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT ({EGRESS_KEYS}) DO UPDATE SET requests = usage_hourly_egress.requests
        + excluded.requests;
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_hourly_add AFTER INSERT ON usage_records
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_add();
"""

# SQLite keeps created_at as UTC text ("2026-01-02 03:04:05.000006"): the hour is its start.
SQLITE_HOUR = "substr(created_at, 1, 13)"
SQLITE_ELEMENTS = "json_each(attempts) AS attempt"
SQLITE_FIELD = "json_extract(attempt.value, '$.{}')"


def _sqlite_triggers() -> tuple[str, str]:
    """SQLite's triggers, one row at a time. The egress one runs only for a record whose
    attempts name an exclusion, so the others never have their JSON parsed."""
    keys = ", ".join(f"coalesce(NEW.{k}, '')" for k in _TEXT_KEYS)
    latency = ", ".join(f"NEW.latency_ms <= {b}" for b in BOUNDS_MS)
    ttft = ", ".join(f"coalesce(NEW.ttft_ms <= {b}, 0)" for b in BOUNDS_MS)
    hourly = f"""
CREATE TRIGGER usage_hourly_add AFTER INSERT ON usage_records BEGIN
    INSERT INTO usage_hourly ({HOURLY_KEYS}, {", ".join(TOTALS)})
    VALUES (substr(NEW.created_at, 1, 13), {keys}, NEW.status / 100,
            coalesce(NEW.currency, ''), 1, NEW.prompt_tokens, NEW.completion_tokens,
            coalesce(NEW.cost_nanos, 0), NEW.latency_ms, NEW.ttft_ms IS NOT NULL,
            coalesce(NEW.ttft_ms, 0), {latency}, {ttft})
    ON CONFLICT ({HOURLY_KEYS}) DO UPDATE SET {_add_excluded("usage_hourly", TOTALS)};
END
"""
    one_row = "(SELECT NEW.created_at AS created_at, NEW.key_name AS key_name, NEW.team AS team,"
    one_row += " NEW.model_alias AS model_alias, NEW.data_class AS data_class,"
    one_row += " NEW.error_type AS error_type, NEW.request_id AS request_id,"
    one_row += " NEW.attempts AS attempts)"
    egress = f"""
CREATE TRIGGER usage_hourly_egress_add AFTER INSERT ON usage_records
WHEN NEW.attempts LIKE '%"excluded"%' BEGIN
    INSERT INTO usage_hourly_egress ({EGRESS_KEYS}, requests)
    {_egress_select(SQLITE_HOUR, one_row, SQLITE_ELEMENTS, SQLITE_FIELD)}
    ON CONFLICT ({EGRESS_KEYS}) DO UPDATE SET requests = usage_hourly_egress.requests
        + excluded.requests;
END
"""
    return hourly, egress


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("key_name", sa.String(200), primary_key=True),
        sa.Column("team", sa.String(200), primary_key=True),
        sa.Column("model_alias", sa.String(256), primary_key=True),
        sa.Column("endpoint", sa.String(32), primary_key=True),
        sa.Column("jurisdiction", sa.String(32), primary_key=True),
        sa.Column("data_class", sa.String(64), primary_key=True),
        sa.Column("status_class", sa.Integer, primary_key=True),
        sa.Column("currency", sa.String(8), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in TOTALS),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "usage_hourly_egress",
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("key_name", sa.String(200), primary_key=True),
        sa.Column("team", sa.String(200), primary_key=True),
        sa.Column("model_alias", sa.String(256), primary_key=True),
        sa.Column("data_class", sa.String(64), primary_key=True),
        sa.Column("outcome", sa.String(16), primary_key=True),
        sa.Column("reason", sa.String(1000), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    postgres = _postgres()
    # The triggers first: creating one locks out writers until this transaction commits, so
    # the totals below and the triggers between them count every row once.
    if postgres:
        op.execute(POSTGRES_TRIGGER)
    else:
        for trigger in _sqlite_triggers():
            op.execute(trigger)
    hour = POSTGRES_HOUR if postgres else SQLITE_HOUR
    elements, field = (
        (POSTGRES_ELEMENTS, POSTGRES_FIELD) if postgres else (SQLITE_ELEMENTS, SQLITE_FIELD)
    )
    op.execute(
        f"INSERT INTO usage_hourly ({HOURLY_KEYS}, {', '.join(TOTALS)})"
        f" {_hourly_select(hour, 'usage_records')}"
    )
    op.execute(
        f"INSERT INTO usage_hourly_egress ({EGRESS_KEYS}, requests)"
        f" {_egress_select(hour, 'usage_records', elements, field)}"
    )


def downgrade() -> None:
    if _postgres():
        op.execute("DROP TRIGGER usage_hourly_add ON usage_records")
        op.execute("DROP FUNCTION usage_hourly_add()")
    else:
        op.execute("DROP TRIGGER usage_hourly_egress_add")
        op.execute("DROP TRIGGER usage_hourly_add")
    op.drop_table("usage_hourly_egress")
    op.drop_table("usage_hourly")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
