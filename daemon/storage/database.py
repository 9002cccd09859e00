"""Opening the database: SQLite (WAL) in the state folder by default, or PostgreSQL.

All SQL elsewhere is SQLAlchemy Core and dialect-neutral; what differs between
backends (pragmas, upserts) is confined to this module and ``dialect.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from invoicesync.plugins.errors import ConfigurationError

from .blobs import Blobs, BlobStore
from .private import make_private_dir, make_private_file
from .schema_guard import (
    SchemaStatus,
    StateError,
    guard,
    head_revision,
    newer_message,
    read_status,
    refuse_lost_catalog,
    upgrade,
)

__all__ = [
    "SchemaReport",
    "StateError",
    "check_sqlite_file",
    "create_engine",
    "damaged",
    "database_url",
    "describe",
    "is_damage",
    "migrate",
    "open_database",
    "schema_report",
    "sqlite_file",
    "translated_errors",
    "upgrade_schema",
]


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
    """Bring the schema to the newest migration (a no-op when it is current).

    For scratch and test databases; a state database is opened through
    :func:`open_database`, which applies the upgrade policy first.
    """
    upgrade(engine)


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL; None for other backends and in-memory databases."""
    if not url.startswith("sqlite"):
        return None
    database = sa.make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def describe(url: str) -> str:
    """How messages name a database: the file for SQLite, else the URL without password."""
    path = sqlite_file(url)
    return str(path) if path is not None else _redact(url)


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` (SQLAlchemy's or sqlite3's) says the SQLite file is corrupt."""
    orig = getattr(exc, "orig", exc)
    if not isinstance(orig, sqlite3.DatabaseError):
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(orig)
    return "malformed" in text or "not a database" in text


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def damaged(where: str, detail: str) -> StateError:
    return StateError(
        f"state database {where} is damaged ({detail}): restore it from a backup "
        "(see docs/operations.md)"
    )


def check_sqlite_file(path: Path) -> None:
    """Refuse an SQLite file that is not one, or is shorter than its header says.

    SQLite itself notices a truncated file only when it reads a missing page,
    which may be deep inside a run; the header's page count (valid when its
    "version-valid-for" matches the change counter) finds it at once. A 0-byte
    file is an empty database to SQLite: :func:`open_database` treats it so.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return
        with path.open("rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(f"state database {path} cannot be read: {exc.strerror}") from exc
    if not header.startswith(b"SQLite format 3\0"):
        raise damaged(str(path), "not an SQLite database file")
    if len(header) < 100:
        raise damaged(str(path), f"truncated to {size} bytes")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and pages and size < pages * page_size:
        raise damaged(
            str(path), f"truncated: {size} bytes, its header says {pages * page_size} bytes"
        )


def quick_check(connection: sa.Connection, where: str) -> None:
    """SQLite's ``PRAGMA quick_check``: reads every page (what the ``db`` commands afford)."""
    rows = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA quick_check(20)")]
    if rows != ["ok"]:
        problems = [
            line for row in rows for line in row.splitlines() if line.strip() and "***" not in line
        ]
        more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
        raise damaged(where, problems[0] + more)


def open_database(
    state_dir: Path, configured_url: str | None = None, *, blobs: Blobs | None = None
) -> sa.Engine:
    """Create the state folder if needed, connect, check and migrate.

    ``blobs`` is the blob store beside it (default: ``STATE/blobs``): an empty
    database beside a store holding content is a lost catalog.

    Raises :class:`StateError` (a ConfigurationError) for a damaged file, a
    database written by a newer invoicesync, a PostgreSQL schema that needs
    ``invoicesync db upgrade``, or a lost catalog (see :mod:`.schema_guard`).
    """
    url = database_url(state_dir, configured_url)
    path = sqlite_file(url)
    if url.startswith("sqlite"):
        make_private_dir(state_dir)
    if path is not None:
        check_sqlite_file(path)
    engine = create_engine(url)
    try:
        with translated_errors(describe(url)):
            guard(
                engine,
                describe(url),
                blobs=blobs or _default_blobs(state_dir),
                catalog_hint=str(path) if path else "the database",
                upgrade_behind=path is not None,
                backup=backup_path(path) if path is not None else None,
            )
    except BaseException:
        engine.dispose()
        raise
    if path is not None:
        # 0600 whatever the umask; SQLite gives -wal/-shm the database's mode.
        for suffix in ("", "-wal", "-shm"):
            make_private_file(Path(f"{path}{suffix}"))
    return engine


@contextmanager
def translated_errors(where: str) -> Iterator[None]:
    """Driver errors while opening or checking a database, as clear StateErrors.

    A corrupt SQLite file is "damaged"; anything else (unreachable server,
    wrong credentials, a locked file) "cannot open", without SQL or parameters.
    """
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if is_damage(exc):
            raise damaged(where, str(exc.orig)) from exc
        raise ConfigurationError(f"database: cannot open {where}: {exc.orig}") from exc


def _checked_status(engine: sa.Engine, where: str, path: Path | None) -> SchemaStatus:
    with engine.connect() as connection:
        status = read_status(connection)
        if path is not None:
            quick_check(connection, where)
    return status


def _default_blobs(state_dir: Path) -> Blobs:
    return BlobStore(state_dir / "blobs", write=False)  # write=False creates nothing


def backup_path(path: Path) -> Path:
    """Where an SQLite catalog is copied before an upgrade to this code's schema."""
    return path.with_name(f"{path.name}.before-{head_revision()}")


# -- `invoicesync db status` / `db upgrade` ------------------------------------------


@dataclass(frozen=True)
class SchemaReport:
    """What ``invoicesync db status`` prints."""

    text: str
    up_to_date: bool


def schema_report(
    state_dir: Path, configured_url: str | None, blobs: Blobs | None = None
) -> SchemaReport:
    """Read the database's revision without changing anything (not even creating it).

    Raises :class:`StateError` when it cannot be used at all.
    """
    url = database_url(state_dir, configured_url)
    where = describe(url)
    path = sqlite_file(url)
    head = head_revision()
    lines = [f"database: {where}"]
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        status = SchemaStatus(None, head, True)
    else:
        if path is not None:
            check_sqlite_file(path)
        engine = create_engine(url)
        try:
            with translated_errors(where):
                status = _checked_status(engine, where, path)
        finally:
            engine.dispose()
    lines.append(f"schema revision: {status.current or 'none (no invoicesync tables yet)'}")
    lines.append(f"this invoicesync needs: {head}")
    if status.newer:
        raise StateError(newer_message(where, status))
    if status.empty:
        if path is not None:
            refuse_lost_catalog(where, str(path), blobs or _default_blobs(state_dir))
            lines.append("new: the first run creates the schema")
        else:
            refuse_lost_catalog(where, "the database", blobs or _default_blobs(state_dir))
            lines.append("new: `invoicesync db upgrade` or the first run creates the schema")
    elif status.behind:
        lines.append(
            "behind: the next start upgrades it (a copy of the file is kept first)"
            if path is not None
            else "behind: stop every invoicesync process using it, then `invoicesync db upgrade`"
        )
    else:
        lines.append("up to date")
    return SchemaReport("\n".join(lines), status.up_to_date)


def upgrade_schema(state_dir: Path, configured_url: str | None, blobs: Blobs | None = None) -> str:
    """Apply the migrations (``invoicesync db upgrade``); what was done, as a sentence."""
    url = database_url(state_dir, configured_url)
    where = describe(url)
    path = sqlite_file(url)
    if path is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        check_sqlite_file(path)
    engine = create_engine(url)
    try:
        with translated_errors(where):
            before = _checked_status(engine, where, path)  # never migrate a damaged file
            if before.empty:
                hint = str(path) if path else "the database"
                refuse_lost_catalog(where, hint, blobs or _default_blobs(state_dir))
            status, backup = upgrade(engine, backup=backup_path(path) if path else None)
    finally:
        engine.dispose()
    if status.up_to_date:
        return f"{where}: already at revision {status.head}; nothing to do"
    text = f"{where}: upgraded from revision {status.current or 'none'} to {status.head}"
    return text + (f" (the file before: {backup})" if backup else "")
