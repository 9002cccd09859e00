"""The first schema: documents, revisions, ledger, source cursors, runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from invoicesync.daemon.storage.types import DecimalString, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(600), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("external_id", sa.String(500), nullable=False),
        sa.Column("company", sa.String(100), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("number", sa.Text, nullable=True),
        sa.Column("document_date", sa.Date, nullable=True),
        sa.Column("due_date", sa.Date, nullable=True),
        sa.Column("import_date", UTCDateTime, nullable=False),
        sa.Column("net_amount", DecimalString, nullable=True),
        sa.Column("gross_amount", DecimalString, nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("payment_status", sa.String(32), nullable=False),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("media_type", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("fingerprint", sa.String(200), nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
    )
    op.create_index("ix_documents_source", "documents", ["source"])
    op.create_index("ix_documents_company", "documents", ["company"])
    op.create_index("ix_documents_document_date", "documents", ["document_date"])
    op.create_index("ix_documents_import_date", "documents", ["import_date"])

    op.create_table(
        "document_revisions",
        sa.Column("document_id", sa.String(600), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("imported_at", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_document_revisions_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", "revision", name="pk_document_revisions"),
    )

    op.create_table(
        "ledger",
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("document_id", sa.String(600), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("remote_name", sa.Text, nullable=False),
        sa.Column("remote_ref", sa.Text, nullable=True),
        sa.Column("exported_sha256", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("first_exported_at", UTCDateTime, nullable=True),
        sa.Column("exported_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_ledger_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account", "document_id", name="pk_ledger"),
        sa.UniqueConstraint("account", "remote_name", name="uq_ledger_account_remote_name"),
    )
    op.create_index("ix_ledger_account_state", "ledger", ["account", "state"])

    op.create_table(
        "source_cursors",
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("cursor", sa.Text, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_source_cursors"),
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_kind_subject_started_at", "runs", ["kind", "subject", "started_at"])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("source_cursors")
    op.drop_table("ledger")
    op.drop_table("document_revisions")
    op.drop_table("documents")
