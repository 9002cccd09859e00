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

import ast
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from invoicesync.daemon import __version__
from invoicesync.plugins.errors import ConfigurationError

from .blobs import Blobs

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

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
    """Alembic's configuration for this code's migrations (imports alembic: upgrades only)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


# Every process checks the schema revision at start, and importing alembic's
# migration machinery to do so cost about a third of a no-op sync's start-up
# (docs/performance.md, "Start-up"). The check needs only two facts: the
# revision stamped in the database (one SELECT) and the revisions this code
# ships. The latter are read from the migration scripts' own ``revision`` and
# ``down_revision`` assignments, without running them; alembic is imported
# only to migrate. tests/daemon/test_schema_guard_cheap.py checks that this
# agrees with alembic's ScriptDirectory.
_revisions_cache: dict[Path, tuple[str, frozenset[str]]] = {}


def _revisions() -> tuple[str, frozenset[str]]:
    """(head, every known revision) of the migrations in :data:`MIGRATIONS`."""
    folder = MIGRATIONS  # read at call time: tests point it at another folder
    cached = _revisions_cache.get(folder)
    if cached is not None:
        return cached
    parents: dict[str, tuple[str, ...]] = {}
    for script in sorted((folder / "versions").glob("*.py")):
        found = _revision_of(script)
        if found is not None:
            parents[found[0]] = found[1]
    children = {parent for down in parents.values() for parent in down}
    heads = [rev for rev in parents if rev not in children]
    # Our migrations are linear: one head. More (or none) is a broken checkout.
    if len(heads) != 1:
        raise RuntimeError(f"the migrations in {folder} have heads {sorted(heads)}, not one")
    result = (heads[0], frozenset(parents))
    _revisions_cache[folder] = result
    return result


def _revision_of(script: Path) -> tuple[str, tuple[str, ...]] | None:
    """A migration script's ``revision`` and ``down_revision`` (module-level literals,
    as alembic's template writes them); None for a file that is not a migration."""
    values: dict[str, object] = {}
    for node in ast.parse(script.read_bytes(), str(script)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            values[target.id] = ast.literal_eval(value)
    revision = values.get("revision")
    if not isinstance(revision, str):
        return None
    down = values.get("down_revision")
    if isinstance(down, str):
        return revision, (down,)
    return revision, tuple(str(parent) for parent in down) if isinstance(down, tuple | list) else ()


def head_revision() -> str:
    """The newest revision this invoicesync knows."""
    return _revisions()[0]


def _known(revision: str) -> bool:
    return revision in _revisions()[1]


VERSION_TABLE = "alembic_version"
"""Where alembic stamps the revision (its default table name, which env.py keeps)."""


def _current_heads(connection: sa.Connection) -> tuple[str, ...]:
    """The revisions stamped in the database, as alembic's MigrationContext reads them."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return ()
    table = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
    return tuple(row[0] for row in connection.execute(sa.select(table.c.version_num)))


def read_status(connection: sa.Connection) -> SchemaStatus:
    """The schema revision of the database behind ``connection`` (read only)."""
    heads = _current_heads(connection)
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
    # Imported here: migrating is rare, and structlog is not free to import.
    import structlog

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
