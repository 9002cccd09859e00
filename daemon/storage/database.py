"""Opening the database: SQLite (WAL) in the state folder by default, or PostgreSQL.

All SQL elsewhere is SQLAlchemy Core and dialect-neutral; what differs between
backends (pragmas, upserts) is confined to this module and ``dialect.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from invoicesync.plugins.errors import ConfigurationError

MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(state_dir: Path, configured: str | None) -> str:
    """The configured URL, else an SQLite file inside the state folder."""
    if configured:
        return configured
    return f"sqlite:///{state_dir / 'catalog.sqlite3'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (status, explain) work while a sync writes; NORMAL
    # synchronous is crash-safe in WAL mode (a power loss may lose the last
    # transaction, never corrupt); foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url`` with the settings invoicesync relies on."""
    try:
        engine = sa.create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigurationError(f"database: cannot use {_redact(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _redact(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid URL>"


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is current)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # N nodes starting together against one fresh database: one
            # migrates, the others wait here and then find nothing to do.
            connection.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock("
                    "hashtext('invoicesync:migrate:' || current_schema()))"
                )
            )
            if MigrationContext.configure(connection).get_current_revision() == head:
                return
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def open_database(state_dir: Path, configured_url: str | None = None) -> sa.Engine:
    """Create the state folder if needed, connect, and migrate."""
    url = database_url(state_dir, configured_url)
    if url.startswith("sqlite"):
        state_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        migrate(engine)
    except sa.exc.OperationalError as exc:
        raise ConfigurationError(f"database: cannot open {_redact(url)}: {exc.orig}") from exc
    return engine
