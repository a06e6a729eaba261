"""Routing attempts, data classes, detector findings and cache hits on usage records; teams,
data classes, rate limits and cache opt-in on keys.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("team", sa.String(200), nullable=True))
        batch.add_column(sa.Column("data_class", sa.String(64), nullable=True))
        batch.add_column(sa.Column("requests_per_minute", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tokens_per_minute", sa.Integer, nullable=True))
        batch.add_column(sa.Column("cache_ttl_seconds", sa.Integer, nullable=True))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("team", sa.String(200), nullable=True))
        batch.add_column(sa.Column("data_class", sa.String(64), nullable=True))
        batch.add_column(sa.Column("findings", sa.JSON, nullable=True))
        batch.add_column(sa.Column("attempts", sa.JSON, nullable=True))
        batch.add_column(
            sa.Column("cache_hit", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        for column in ("cache_hit", "attempts", "findings", "data_class", "team"):
            batch.drop_column(column)
    with op.batch_alter_table("api_keys") as batch:
        for column in (
            "cache_ttl_seconds",
            "tokens_per_minute",
            "requests_per_minute",
            "data_class",
            "team",
        ):
            batch.drop_column(column)
