"""Fingerprints of remote models (canary answers, kept with their date).

- `fingerprint_runs`: one row per `entrepot fingerprint take` (the reference of a model) or
  `check` (with its agreement with the take it compared to, the noise floor and the verdict).
- `fingerprint_answers`: every answer of a run, per sample and canary, with its token counts and
  the deployment that answered.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fingerprint_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_alias", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=True),
        sa.Column("canary_set", sa.String(32), nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("key_name", sa.String(200), nullable=True),
        sa.Column("fingerprint_id", sa.String(64), nullable=True),
        sa.Column("exact_share", sa.Float, nullable=True),
        sa.Column("similarity", sa.Float, nullable=True),
        sa.Column("floor", sa.Float, nullable=True),
        sa.Column("floor_spread", sa.Float, nullable=True),
        sa.Column("margin", sa.Float, nullable=True),
        sa.Column("substituted", sa.Boolean, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_fingerprint_runs_model", "fingerprint_runs", ["model_alias", "kind", "created_at"]
    )
    op.create_table(
        "fingerprint_answers",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("sample", sa.Integer, primary_key=True),
        sa.Column("canary", sa.String(64), primary_key=True),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("deployment", sa.String(256), nullable=True),
        sa.Column("finish_reason", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("fingerprint_answers")
    op.drop_index("ix_fingerprint_runs_model", "fingerprint_runs")
    op.drop_table("fingerprint_runs")
