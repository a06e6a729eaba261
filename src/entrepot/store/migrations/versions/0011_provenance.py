"""Provenance of local weights: `usage_records.weights_sha256` and `adapter_sha256`, the
SHA-256 of the weights file that answered a request and of the LoRA adapter applied to it.

Registered derivatives and their lineage live in the configuration file (`entrepot models add`
writes them there), beside every other model; the digests of files on disk are cached per
machine in the data directory. So this migration only adds the ledger's two columns, with
ALTER TABLE (no table rebuild), so SQLite keeps the triggers of 0007 and 0010.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = ("weights_sha256", "adapter_sha256")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("usage_records", sa.Column(column, sa.String(64), nullable=True))


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column("usage_records", column)
