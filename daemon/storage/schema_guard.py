"""Which schema revision a database is at, and whether this invoicesync may use it.

The policy (docs/operations.md, "Upgrading"):

- a database stamped with a revision this code does not know was written by
  a **newer** invoicesync: refused on every backend (running older code on a
  newer schema could write rows the newer code misreads);
- an **empty** database (no invoicesync tables yet) is created, unless the
  blob store already holds content: then the catalog of an existing
  installation went missing and a fresh one would import and export every
  document again, so it is refused (see :func:`refuse_lost_catalog`);
- a database **behind** this code's newest revision is upgraded at start on
  SQLite (one process owns the file; a copy of the file is kept first), but
  refused on PostgreSQL, where other nodes may still run the old code on it:
  there ``invoicesync db upgrade`` applies the migrations, once, explicitly.

Migrations on PostgreSQL run inside one transaction holding an advisory
lock, so two processes upgrading at once apply them once.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sqlalchemy as sa
import structlog
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from invoicesync.daemon import __version__
from invoicesync.plugins.errors import ConfigurationError

from .blobs import Blobs

__all__ = [
    "SchemaStatus",
    "StateError",
    "guard",
    "read_status",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")

# One migration at a time per schema (nodes of one cluster share it; test
# schemas in one database do not).
_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtext('invoicesync:migrate:' || current_schema()))"
)


class StateError(ConfigurationError):
    """The state (database, blob store) cannot be used as it is.

    The message names the database and says what to do; the command line
    exits with 2 and the daemon refuses to start.
    """


@dataclass(frozen=True)
class SchemaStatus:
    """A database's schema revision compared with this code's migrations."""

    current: str | None
    """The stamped revision; None when the database has no invoicesync tables yet."""
    head: str
    """The newest revision this invoicesync knows."""
    known: bool
    """Whether ``current`` is one of this code's revisions (or None)."""

    @property
    def empty(self) -> bool:
        return self.current is None

    @property
    def newer(self) -> bool:
        return not self.known

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def behind(self) -> bool:
        return self.known and not self.up_to_date


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "the migrations have no head"
    return head


def _known(revision: str) -> bool:
    try:
        return _script().get_revision(revision) is not None
    except CommandError:  # "No such revision", also for a malformed id
        return False


def read_status(connection: sa.Connection) -> SchemaStatus:
    """The schema revision of the database behind ``connection`` (read only)."""
    heads = MigrationContext.configure(connection).get_current_heads()
    head = head_revision()
    if not heads:
        return SchemaStatus(None, head, True)
    # Our migrations are linear: more than one stamped head is not ours.
    current = heads[0] if len(heads) == 1 else ",".join(sorted(heads))
    return SchemaStatus(current, head, len(heads) == 1 and _known(current))


def newer_message(where: str, status: SchemaStatus) -> str:
    return (
        f"state database {where} was written by a newer invoicesync (database revision "
        f"{status.current}; invoicesync {__version__} knows revisions up to {status.head}): "
        "upgrade invoicesync, or restore a backup this version wrote"
    )


def behind_message(where: str, status: SchemaStatus) -> str:
    return (
        f"database {where} has schema revision {status.current}, invoicesync "
        f"{__version__} needs {status.head}: stop every invoicesync process using this "
        "database, run `invoicesync db upgrade` once, then start them with this version "
        "(see docs/operations.md)"
    )


def refuse_lost_catalog(where: str, catalog_hint: str, blobs: Blobs) -> None:
    """Refuse a new, empty catalog beside a blob store that already holds content.

    That is the state of an installation whose catalog was lost (deleted,
    truncated to 0 bytes, a wrong ``database:`` URL). Carrying on would
    import every document as new and export everything again.
    """
    if blobs.holds_any():
        raise StateError(
            f"state database {where} is empty, but the blob store {blobs.location} already holds "
            "documents' content: the catalog of an existing installation is missing, and "
            "starting afresh would import and export every document again. Restore "
            f"{catalog_hint} from a backup; or, to really start afresh, move {blobs.location} "
            "away first"
        )


def guard(
    engine: sa.Engine,
    where: str,
    *,
    blobs: Blobs | None,
    catalog_hint: str,
    upgrade_behind: bool,
    change: bool = True,
    backup: Path | None = None,
) -> SchemaStatus:
    """Check the database against the policy above; create or upgrade it if allowed.

    ``upgrade_behind`` says whether a database behind this code may be
    upgraded here (SQLite) or must be refused (PostgreSQL). ``change=False``
    only checks (dry runs): nothing is created or upgraded. ``backup`` is
    where an SQLite file is copied before an upgrade. Returns the status
    found before any change.
    """
    with engine.connect() as connection:
        status = read_status(connection)
    if status.newer:
        raise StateError(newer_message(where, status))
    if status.empty:
        if blobs is not None:
            refuse_lost_catalog(where, catalog_hint, blobs)
    elif status.behind and not upgrade_behind:
        raise StateError(behind_message(where, status))
    if change and not status.up_to_date:
        upgrade(engine, backup=backup if not status.empty else None)
    return status


def upgrade(engine: sa.Engine, *, backup: Path | None = None) -> tuple[SchemaStatus, Path | None]:
    """Apply the migrations up to this code's newest revision.

    Refuses a newer database. ``backup``: an SQLite file is first copied
    there (kept if it exists: the first copy is the one before any upgrade).
    Returns the status before and the backup written, if any.
    """
    cfg = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two nodes upgrading at once: the second waits here, then finds
            # the schema current. DDL is transactional on PostgreSQL.
            connection.execute(sa.text(_MIGRATION_LOCK))
        status = read_status(connection)
        if status.newer:
            raise StateError(newer_message(_where(engine), status))
        if status.up_to_date:
            return status, None
        written = None
        if backup is not None and not status.empty and not backup.exists():
            _copy_sqlite(engine, backup)
            written = backup
        from alembic import command

        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    # structlog directly: storage sits below daemon.logging, whose
    # configuration (JSON, redaction) applies to this logger all the same.
    structlog.get_logger().info(
        "database.migrated",
        database=_where(engine),
        from_revision=status.current,
        to_revision=status.head,
        backup=str(written) if written else None,
    )
    return status, written


def _copy_sqlite(engine: sa.Engine, target: Path) -> None:
    # SQLite's backup API: a consistent copy even with a -wal file beside.
    source = engine.url.database
    assert source, "not an SQLite file database"
    tmp = target.with_name(target.name + ".tmp")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    tmp.replace(target)


def _where(engine: sa.Engine) -> str:
    if engine.dialect.name == "sqlite":
        return str(engine.url.database)
    return engine.url.render_as_string(hide_password=True)
