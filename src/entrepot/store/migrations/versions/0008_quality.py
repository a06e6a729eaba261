"""Evidence-driven routing and refusals (the quality autopilot).

- `usage_records.task`: the task a request was routed for (`x-entrepot-task`, or its key's
  default task); `evidence_id`: the published bench result a `good_enough` route chose by;
  `refused_by_model`: the answering model refused (the audit's classifier said so), whether or
  not a fallback then answered; `shadow_of`: for a shadow copy, the request it copied.
- `api_keys.default_task`: the task of a key's requests that name none.
- `bench_evidence`: one row per published bench result (model × task), with the paired interval
  of its quality relative to the run's reference model and what an item cost.

Columns are added with ALTER TABLE (no table rebuild), so SQLite keeps the trigger of 0007.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("task", sa.String(128), nullable=True))
    op.add_column("usage_records", sa.Column("evidence_id", sa.String(64), nullable=True))
    op.add_column(
        "usage_records",
        sa.Column("refused_by_model", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("usage_records", sa.Column("shadow_of", sa.String(64), nullable=True))
    op.add_column("api_keys", sa.Column("default_task", sa.String(128), nullable=True))
    op.create_table(
        "bench_evidence",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("model_alias", sa.String(256), nullable=False),
        sa.Column("reference_alias", sa.String(256), nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("score_low", sa.Float, nullable=False),
        sa.Column("score_high", sa.Float, nullable=False),
        sa.Column("relative", sa.Float, nullable=True),
        sa.Column("relative_low", sa.Float, nullable=True),
        sa.Column("relative_high", sa.Float, nullable=True),
        sa.Column("cost_per_item_nanos", sa.BigInteger, nullable=True),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("price_date", sa.String(10), nullable=True),
        sa.Column("price_fingerprint", sa.String(64), nullable=True),
    )
    op.create_index(
        "ix_bench_evidence_task_model", "bench_evidence", ["task", "model_alias", "published_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_bench_evidence_task_model", "bench_evidence")
    op.drop_table("bench_evidence")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("default_task")
    for column in ("shadow_of", "refused_by_model", "evidence_id", "task"):
        op.drop_column("usage_records", column)
