"""A damaged, newer, older or lost state database, through the command line.

Issue 10 item 9 and issue 16 item 5. Each case is answered with a clear
message naming the database and what to do, exit code 2, and no traceback;
nothing is exported again.

"Older" and "newer" need two versions of invoicesync. The newer one is this
code plus one more migration (``9001``), run through a tiny launcher that
points the migrations folder at a copy holding it -- everything else is the
real command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.cli import Result, run_cli, write_config
from fixtures.postgres_schema import fresh_schema, schema_url
from invoicesync.daemon.storage import schema_guard

CONFIG = """version: 1
timezone: UTC
state: ./state
{database}
log: {{format: json}}
sources:
  - {{id: demo, type: demo, options: {{count: 6}}}}
exports:
  - {{id: out, type: folder, options: {{path: ./out}}}}
"""

FUTURE_MIGRATION = '''"""A migration this invoicesync does not have yet (a test's "newer version").

Revision ID: 9001
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("test_note", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "test_note")
'''

LAUNCHER = (
    "import sys; from pathlib import Path; "
    "from invoicesync.daemon.storage import schema_guard; "
    "schema_guard.MIGRATIONS = Path(sys.argv.pop(1)); "
    "from invoicesync.daemon.cli import main; main(prog_name='invoicesync')"
)


def setup(tmp_path: Path, database: str = "") -> Path:
    text = CONFIG.format(database=f"database: {database!r}" if database else "")
    return write_config(tmp_path / "invoicesync.yaml", text)


def assert_refused(result: Result, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def exported(folder: Path) -> dict[str, int]:
    """Every exported file with its modification time (a second export changes it)."""
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def synced(cfg: Path) -> None:
    result = run_cli("sync", config=cfg)
    assert result.returncode == 0, result.stderr
    assert len(exported(cfg.parent / "out")) == 6


def catalog(cfg: Path) -> Path:
    return cfg.parent / "state" / "catalog.sqlite3"


@pytest.fixture(name="newer_code")
def newer_code_fixture(tmp_path: Path) -> Path:
    """A copy of the migrations with one more revision on top of this code's head."""
    folder = tmp_path / "migrations-newer"
    shutil.copytree(schema_guard.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    head = schema_guard.head_revision()
    (folder / "versions" / "9001_test_future.py").write_text(FUTURE_MIGRATION.format(down=head))
    return folder


def run_newer(migrations: Path, cfg: Path, *args: str) -> Result:
    """The command line of an invoicesync whose schema is one revision ahead."""
    env = {**os.environ, "INVOICESYNC_PLUGINS": ""}
    argv = [sys.executable, "-c", LAUNCHER, str(migrations), "--config", str(cfg)]
    proc = subprocess.run(
        [*argv, "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


# -- damaged --------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _scribble(path: Path) -> None:
    # Right size, valid header, garbage pages inside: SQLite finds it only
    # when a query reads them.
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        for offset in range(4096, size, 4096):
            fh.seek(offset + 8)
            fh.write(os.urandom(4000))


COMMANDS = [
    ("sync",),
    ("sync", "--dry-run"),
    ("fetch",),
    ("status",),
    ("documents",),
    ("explain", "out", "demo/x"),
    ("retry", "out"),
    ("db", "status"),
    ("db", "upgrade"),
]


# A file that is not SQLite or is shorter than its header says is found when it
# is opened, the same way for every command: one kind runs them all.
@pytest.mark.parametrize(
    "damage, commands",
    [(_garbage, COMMANDS), (_truncate, COMMANDS[:1]), (_scribble, COMMANDS[:6])],
    ids=["garbage", "truncated", "scribbled"],
)
def test_a_damaged_catalog_is_refused_by_every_command(
    tmp_path: Path, damage: object, commands: list[tuple[str, ...]]
) -> None:
    cfg = setup(tmp_path)
    synced(cfg)
    assert callable(damage)
    damage(catalog(cfg))
    before = exported(tmp_path / "out")
    for command in commands:
        result = run_cli(*command, config=cfg)
        assert_refused(
            result,
            f"state database {catalog(cfg)} is damaged (",
            "restore it from a backup",
        )
    assert exported(tmp_path / "out") == before


def test_the_daemon_refuses_a_damaged_catalog(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    synced(cfg)
    _garbage(catalog(cfg))
    result = run_cli("run", config=cfg, timeout=60)
    assert_refused(result)
    [event] = result.events("state.unusable")
    assert "is damaged (not an SQLite database file)" in event["error"]


# -- lost -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_an_empty_catalog_beside_blobs_is_refused_not_exported_again(
    tmp_path: Path, how: str
) -> None:
    cfg = setup(tmp_path)
    synced(cfg)
    before = exported(tmp_path / "out")
    if how == "emptied":
        catalog(cfg).write_bytes(b"")
    else:
        catalog(cfg).unlink()
    commands = [*COMMANDS[:5], ("db", "upgrade"), ("run",)] if how == "emptied" else [("sync",)]
    for command in commands:
        result = run_cli(*command, config=cfg, timeout=60)
        assert_refused(
            result,
            "is empty, but the blob store",
            "Restore",
            f"move {tmp_path / 'state' / 'blobs'} away first",
        )
    # Nothing was exported a second time.
    assert exported(tmp_path / "out") == before

    # Starting afresh, as the message says: the blobs moved away.
    (tmp_path / "state" / "blobs").rename(tmp_path / "old-blobs")
    result = run_cli("sync", config=cfg)
    assert result.returncode == 0, result.stderr


def test_a_new_installation_is_not_refused(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    result = run_cli("db", "status", config=cfg)
    assert result.returncode == 1, result.stderr  # nothing to use yet
    assert "new: the first run creates the schema" in result.stdout
    assert not (tmp_path / "state").exists()  # looking creates nothing
    synced(cfg)
    result = run_cli("db", "status", config=cfg)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "up to date"


# -- older and newer schemas: SQLite ---------------------------------------------------


def test_sqlite_upgrades_itself_keeping_a_copy_and_older_code_refuses_it(
    tmp_path: Path, newer_code: Path
) -> None:
    cfg = setup(tmp_path)
    synced(cfg)
    head = schema_guard.head_revision()

    result = run_newer(newer_code, cfg, "db", "status")
    assert result.returncode == 1, result.stderr
    assert f"schema revision: {head}" in result.stdout
    assert "this invoicesync needs: 9001" in result.stdout
    assert "behind: the next start upgrades it" in result.stdout

    result = run_newer(newer_code, cfg, "status")
    assert result.returncode == 0, result.stderr
    [migrated] = result.events("database.migrated")
    backup = catalog(cfg).with_name("catalog.sqlite3.before-9001")
    assert migrated["from_revision"] == head and migrated["to_revision"] == "9001"
    assert migrated["backup"] == str(backup)
    with sqlite3.connect(backup) as old:  # the copy is the catalog as it was
        assert old.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        assert old.execute("SELECT count(*) FROM documents").fetchone() == (6,)

    # This code (one revision older) now refuses the file, in every command.
    for command in [("sync",), ("status",), ("db", "upgrade"), ("run",)]:
        result = run_cli(*command, config=cfg, timeout=60)
        assert_refused(
            result,
            f"state database {catalog(cfg)} was written by a newer invoicesync "
            f"(database revision 9001; invoicesync ",
            f"knows revisions up to {head}): upgrade invoicesync",
        )


# -- older and newer schemas: PostgreSQL ------------------------------------------------


@pytest.fixture(name="pg_url")
def pg_url_fixture() -> Iterator[str]:
    """A database URL whose tables live in a fresh schema of the test PostgreSQL."""
    with fresh_schema("stateguard") as schema:
        yield schema_url(schema)


def test_postgresql_refuses_a_schema_behind_until_db_upgrade(
    tmp_path: Path, newer_code: Path, pg_url: str
) -> None:
    cfg = setup(tmp_path, pg_url)
    synced(cfg)  # an empty database is created by the first run
    before = exported(tmp_path / "out")
    head = schema_guard.head_revision()

    # The newer code on the older schema: no node upgrades it behind the others' backs.
    for command in [("sync",), ("status",), ("run",)]:
        result = run_newer(newer_code, cfg, *command)
        assert_refused(
            result,
            f"has schema revision {head}, invoicesync ",
            "needs 9001: stop every invoicesync process using this database, "
            "run `invoicesync db upgrade` once",
        )
    result = run_newer(newer_code, cfg, "db", "status")
    assert result.returncode == 1, result.stderr
    assert "behind: stop every invoicesync process using it, then `invoicesync db upgrade`" in (
        result.stdout
    )
    assert "postgres@" in result.stdout and "search_path" in result.stdout

    result = run_newer(newer_code, cfg, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"upgraded from revision {head} to 9001" in result.stdout
    result = run_newer(newer_code, cfg, "db", "upgrade")
    assert "already at revision 9001; nothing to do" in result.stdout
    result = run_newer(newer_code, cfg, "sync")
    assert result.returncode == 0, result.stderr
    assert exported(tmp_path / "out") == before  # nothing exported twice

    # This code, now older than the schema, refuses to start.
    for command in [("sync",), ("db", "status"), ("run",)]:
        result = run_cli(*command, config=cfg, timeout=60)
        assert_refused(
            result,
            "was written by a newer invoicesync (database revision 9001; invoicesync ",
            f"knows revisions up to {head}): upgrade invoicesync",
        )
