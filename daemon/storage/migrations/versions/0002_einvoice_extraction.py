"""Extraction: field provenance, e-invoice validity, duplicates across sources.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("einvoice_valid", sa.Boolean, nullable=True))
        batch.add_column(sa.Column("einvoice_errors", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("duplicate_of", sa.String(600), nullable=True))
        batch.add_column(sa.Column("business_key", sa.String(64), nullable=True))
        batch.create_index("ix_documents_duplicate_of", ["duplicate_of"])
        batch.create_index("ix_documents_business_key", ["business_key"])
        batch.create_index("ix_documents_sha256", ["sha256"])


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_index("ix_documents_sha256")
        batch.drop_index("ix_documents_business_key")
        batch.drop_index("ix_documents_duplicate_of")
        for column in (
            "business_key",
            "duplicate_of",
            "einvoice_errors",
            "einvoice_valid",
            "provenance",
        ):
            batch.drop_column(column)
