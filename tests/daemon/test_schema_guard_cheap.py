"""The schema revision check without alembic agrees with alembic (issue 13, start-up).

``schema_guard`` reads the stamped revision with SQLAlchemy and this code's
revisions from the migration scripts' assignments, importing alembic only to
migrate. These tests hold it to what alembic itself says, on real SQLite
databases.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from invoicesync.daemon.storage import schema_guard
from invoicesync.daemon.storage.database import create_engine, migrate


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    yield engine
    engine.dispose()


def alembic_heads(engine: sa.Engine) -> tuple[str, ...]:
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def test_head_and_revisions_are_alembics() -> None:
    script = ScriptDirectory.from_config(schema_guard.alembic_config())
    head, known = schema_guard._revisions()
    assert head == script.get_current_head()
    assert known == {rev.revision for rev in script.walk_revisions()}


def test_status_of_an_empty_a_current_and_a_newer_database(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        empty = schema_guard.read_status(connection)
    assert empty.empty and empty.known and not empty.up_to_date
    assert alembic_heads(engine) == ()

    migrate(engine)
    with engine.connect() as connection:
        current = schema_guard.read_status(connection)
    assert (current.current,) == alembic_heads(engine)
    assert current.up_to_date and not current.newer and not current.behind

    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with engine.connect() as connection:
        newer = schema_guard.read_status(connection)
    assert alembic_heads(engine) == ("9999",)
    assert newer.current == "9999" and newer.newer

    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('0001')"))
    with engine.connect() as connection:
        two = schema_guard.read_status(connection)
    assert sorted(alembic_heads(engine)) == ["0001", "9999"]
    assert two.current == "0001,9999" and two.newer  # not ours: refused


def test_a_database_behind_is_known_and_behind(engine: sa.Engine) -> None:
    migrate(engine)
    head, known = schema_guard._revisions()
    older = sorted(known - {head})[0]
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE alembic_version SET version_num = '{older}'"))
    with engine.connect() as connection:
        status = schema_guard.read_status(connection)
    assert status.current == older and status.behind and not status.newer


def test_another_migrations_folder_is_read_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests (and a newer version) point MIGRATIONS elsewhere; the scripts may annotate
    their assignments or name several parents (a merge), as alembic allows."""
    folder = tmp_path / "migrations"
    shutil.copytree(schema_guard.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    old_head = schema_guard.head_revision()
    (folder / "versions" / "9001_next.py").write_text(
        f'"""A later migration."""\nrevision: str = "9001"\n'
        f'down_revision: tuple[str, ...] | None = ("{old_head}",)\n'
        "def upgrade() -> None:\n    pass\n"
    )
    monkeypatch.setattr(schema_guard, "MIGRATIONS", folder)
    head, known = schema_guard._revisions()
    assert head == "9001" and {"9001", old_head} <= known
    assert head == ScriptDirectory.from_config(schema_guard.alembic_config()).get_current_head()


def test_two_heads_are_a_broken_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(schema_guard.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    base = sorted(schema_guard._revisions()[1])[0]
    (folder / "versions" / "9002_branch.py").write_text(
        f'revision = "9002"\ndown_revision = "{base}"\n'
    )
    monkeypatch.setattr(schema_guard, "MIGRATIONS", folder)
    with pytest.raises(RuntimeError, match="not one"):
        schema_guard._revisions()
