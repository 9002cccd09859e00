"""Alembic environment: invoicesync runs migrations itself, on its own connection."""

from __future__ import annotations

from alembic import context
from invoicesync.daemon.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the alembic CLI gets here
    raise RuntimeError("run migrations through invoicesync.daemon.storage.database")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
