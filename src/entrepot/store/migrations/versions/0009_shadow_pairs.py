"""Shadow verification on live traffic: `shadow_pairs`, one row per request a route's `shadow`
copied to its candidate (or could not), with both answers for the retention period, and the
costs and the grade for good.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_pairs",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("copy_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("task", sa.String(128), nullable=True),
        sa.Column("incumbent", sa.String(256), nullable=False),
        sa.Column("candidate", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("incumbent_answer", sa.Text, nullable=True),
        sa.Column("candidate_answer", sa.Text, nullable=True),
        sa.Column("incumbent_cost_nanos", sa.BigInteger, nullable=True),
        sa.Column("candidate_cost_nanos", sa.BigInteger, nullable=True),
        sa.Column("grading_cost_nanos", sa.BigInteger, nullable=True),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("price_date", sa.String(10), nullable=True),
        sa.Column("graded_by", sa.String(300), nullable=True),
        sa.Column("difference", sa.Float, nullable=True),
    )
    op.create_index("ix_shadow_pairs_route_created", "shadow_pairs", ["route", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_shadow_pairs_route_created", "shadow_pairs")
    op.drop_table("shadow_pairs")
