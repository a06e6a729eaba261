"""The ledger at production size (tens of millions of rows): budget spend per key and per team
read from an index, and usage summaries read from daily totals kept by a trigger.

- `ix_usage_key_created` (key_id, created_at) replaces `ix_usage_key_id`, and
  `ix_usage_team_created` (team, created_at) is new: `spend_since` reads the rows of one key or
  team since a date, which no index served for teams. On PostgreSQL both indices include the
  currency and cost, so the sum is an index-only scan.
- `usage_daily` holds, per UTC day, key, model and currency, what `entrepot usage` and
  `/admin/usage` show. A trigger adds every inserted usage record to it in the same transaction,
  so it is exactly the sum of the ledger; this migration fills it from the rows already there.
  PostgreSQL sums each INSERT statement's rows at once (a statement trigger over its transition
  table, upserting in key order so concurrent writers never deadlock); SQLite, one row at a time.

On SQLite a later migration that rebuilds `usage_records` (a batch "move and copy") drops the
trigger with the old table, and must create it again.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TOTALS = "requests, failed, prompt_tokens, completion_tokens, cost_nanos"
GROUP = "day, key_name, model_alias, currency"
ADD_EXCLUDED = ", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in TOTALS.split(", "))


def _sums(day: str, failed: str, source: str) -> str:
    return f"""
        SELECT {day}, coalesce(key_name, ''), coalesce(model_alias, ''), coalesce(currency, ''),
               count(*), {failed}, coalesce(sum(prompt_tokens), 0),
               coalesce(sum(completion_tokens), 0), coalesce(sum(cost_nanos), 0)
        FROM {source} GROUP BY 1, 2, 3, 4"""


POSTGRES_DAY = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
POSTGRES_FAILED = "count(*) FILTER (WHERE status >= 400)"
POSTGRES_TRIGGER = f"""
CREATE FUNCTION usage_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily ({GROUP}, {TOTALS})
    {_sums(POSTGRES_DAY, POSTGRES_FAILED, "added")} ORDER BY 1, 2, 3, 4
    ON CONFLICT ({GROUP}) DO UPDATE SET {ADD_EXCLUDED};
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_daily_add AFTER INSERT ON usage_records
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_add();
"""

# SQLite keeps created_at as UTC text ("2026-01-02 03:04:05.000006"): the day is its start.
SQLITE_DAY = "substr(created_at, 1, 10)"
SQLITE_FAILED = "sum(status >= 400)"
SQLITE_TRIGGER = f"""
CREATE TRIGGER usage_daily_add AFTER INSERT ON usage_records BEGIN
    INSERT INTO usage_daily ({GROUP}, {TOTALS})
    VALUES (substr(NEW.created_at, 1, 10), coalesce(NEW.key_name, ''),
            coalesce(NEW.model_alias, ''), coalesce(NEW.currency, ''), 1, NEW.status >= 400,
            NEW.prompt_tokens, NEW.completion_tokens, coalesce(NEW.cost_nanos, 0))
    ON CONFLICT ({GROUP}) DO UPDATE SET {ADD_EXCLUDED};
END
"""


def upgrade() -> None:
    op.drop_index("ix_usage_key_id", table_name="usage_records")
    for name, column in (("ix_usage_key_created", "key_id"), ("ix_usage_team_created", "team")):
        op.create_index(
            name,
            "usage_records",
            [column, "created_at"],
            postgresql_include=["currency", "cost_nanos"],
        )
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("key_name", sa.String(200), primary_key=True),
        sa.Column("model_alias", sa.String(256), primary_key=True),
        sa.Column("currency", sa.String(8), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in TOTALS.split(", ")),
    )
    postgres = _postgres()
    # The trigger first: creating it locks out writers until this transaction commits, so the
    # totals below and the trigger between them count every row once.
    op.execute(POSTGRES_TRIGGER if postgres else SQLITE_TRIGGER)
    day, failed = (POSTGRES_DAY, POSTGRES_FAILED) if postgres else (SQLITE_DAY, SQLITE_FAILED)
    op.execute(f"INSERT INTO usage_daily ({GROUP}, {TOTALS}) {_sums(day, failed, 'usage_records')}")


def downgrade() -> None:
    op.execute("DROP TRIGGER usage_daily_add" + (" ON usage_records" if _postgres() else ""))
    if _postgres():
        op.execute("DROP FUNCTION usage_daily_add()")
    op.drop_table("usage_daily")
    op.drop_index("ix_usage_team_created", table_name="usage_records")
    op.drop_index("ix_usage_key_created", table_name="usage_records")
    op.create_index("ix_usage_key_id", "usage_records", ["key_id"])


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
