"""``invoicesync db status`` and ``db upgrade``: the state database's schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from . import main
from .common import EXIT_FAILED, EXIT_OK, fail
from .context import AppContext


@main.group()
def db() -> None:
    """Show or upgrade the state database's schema.

    On SQLite (the default) invoicesync upgrades the schema itself at start,
    keeping a copy of the file (catalog.sqlite3.before-REVISION). On
    PostgreSQL, where several nodes may share the database, a process refuses
    to start on a schema older or newer than it expects: stop every node, run
    `invoicesync db upgrade` once, start the new version. See docs/operations.md.
    """


@db.command("status")
@click.pass_obj
def db_status(app: AppContext) -> None:
    """The schema revision of the database and the one this invoicesync needs.

    Exit code 0: up to date; 1: `invoicesync db upgrade` (or, on SQLite, the
    next start) will upgrade it; 2: it cannot be used (damaged, written by a
    newer invoicesync, unreachable).
    """
    from invoicesync.daemon.storage.database import schema_report
    from invoicesync.plugins.errors import ConfigurationError

    try:
        report = schema_report(*_state_of(app))
    except ConfigurationError as exc:
        fail(str(exc))
    app.out.print(report.text, markup=False)
    sys.exit(EXIT_OK if report.up_to_date else EXIT_FAILED)


@db.command("upgrade")
@click.pass_obj
def db_upgrade(app: AppContext) -> None:
    """Apply the schema migrations this invoicesync brings (a no-op when current).

    On PostgreSQL, stop every invoicesync process using the database first;
    two upgrades at once are safe (an advisory lock makes them apply once).
    An SQLite file is copied to catalog.sqlite3.before-REVISION first.
    """
    from invoicesync.daemon.storage.database import upgrade_schema
    from invoicesync.plugins.errors import ConfigurationError

    try:
        text = upgrade_schema(*_state_of(app))
    except ConfigurationError as exc:
        fail(str(exc))
    app.out.print(text, markup=False)


def _state_of(app: AppContext) -> tuple[Path, str | None, Any]:
    """The state folder, the database URL and the blob store (opened read-only)."""
    from invoicesync.daemon.storage.blobs import open_blob_store

    config = app.loaded.config
    state = Path(config.state)
    return state, config.database, open_blob_store(config.blobs, state, write=False)
