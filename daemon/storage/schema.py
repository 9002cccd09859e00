"""The database schema (SQLAlchemy Core). Alembic migrations create and evolve it.

Change a table here only together with a new migration under
``migrations/versions``; ``tests/test_storage.py`` checks they agree.
"""

from __future__ import annotations

import sqlalchemy as sa

from .types import DecimalString, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: One row per document: its current metadata and content (latest revision).
documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", sa.String(600), primary_key=True),
    sa.Column("source", sa.String(100), nullable=False, index=True),
    sa.Column("external_id", sa.String(500), nullable=False),
    sa.Column("company", sa.String(100), nullable=True, index=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("number", sa.Text, nullable=True),
    sa.Column("document_date", sa.Date, nullable=True, index=True),
    sa.Column("due_date", sa.Date, nullable=True),
    sa.Column("import_date", UTCDateTime, nullable=False, index=True),
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
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("fingerprint", sa.String(200), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Where each extracted field came from: {"document_date": "Factur-X XML, BT-2"}.
    sa.Column("provenance", sa.JSON, nullable=False, server_default="{}"),
    sa.Column("einvoice_valid", sa.Boolean, nullable=True),
    sa.Column("einvoice_errors", sa.JSON, nullable=False, server_default="[]"),
    # The first document this one repeats (same content from another source,
    # or the same seller + number + gross + currency); null: not a duplicate.
    sa.Column("duplicate_of", sa.String(600), nullable=True, index=True),
    # SHA-256 of seller, number, gross amount and currency, when all are known.
    sa.Column("business_key", sa.String(64), nullable=True, index=True),
)

#: Every content revision a document has had (the first is revision 1).
document_revisions = sa.Table(
    "document_revisions",
    metadata,
    sa.Column(
        "document_id",
        sa.String(600),
        sa.ForeignKey("documents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("imported_at", UTCDateTime, nullable=False),
)

#: Per (export account, document): what happened to it (SPEC section 1).
#: ``state`` is one of ``exporting`` (intent recorded, target not yet
#: confirmed), ``exported``, ``failed`` (transient, retried) or ``rejected``.
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("account", sa.String(100), primary_key=True),
    sa.Column(
        "document_id",
        sa.String(600),
        sa.ForeignKey("documents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("remote_name", sa.Text, nullable=False),
    sa.Column("remote_ref", sa.Text, nullable=True),
    sa.Column("exported_sha256", sa.String(64), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("first_exported_at", UTCDateTime, nullable=True),
    sa.Column("exported_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("account", "remote_name"),
    sa.Index("ix_ledger_account_state", "account", "state"),
)

#: Where each source resumes.
source_cursors = sa.Table(
    "source_cursors",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("cursor", sa.Text, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

#: One row per import or export run, for ``status`` and monitoring.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(100), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_runs_kind_subject_started_at", "kind", "subject", "started_at"),
)
