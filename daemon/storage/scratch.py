"""A scratch copy of a PostgreSQL catalog for dry runs.

A dry run fetches from sources and plans exports as a real run would, so it
needs a catalog it may write to. On SQLite that is a backup copy of the file
(see ``engine/runtime.py``); on PostgreSQL it is a temporary schema in the
same database holding a copy of every invoicesync table, made in one
transaction (a consistent snapshot) and dropped when the dry run ends. The
real tables are only read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa

from .database import create_engine
from .schema import metadata

#: Tables copied, parents before children; alembic's stamp keeps migrate() a no-op.
_TABLES = [*(t.name for t in metadata.sorted_tables), "alembic_version"]


def postgres_scratch_copy(url: str) -> tuple[sa.Engine, Callable[[], None]]:
    """An engine on a fresh copy of the catalog at ``url``, and its cleanup."""
    source = create_engine(url)
    scratch = f"invoicesync_dry_run_{uuid.uuid4().hex[:12]}"
    try:
        with source.begin() as conn:
            conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            real = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
            conn.execute(sa.text(f'CREATE SCHEMA "{scratch}"'))
            for table in _TABLES:
                exists = conn.execute(
                    sa.text("SELECT to_regclass(:t)"), {"t": f'"{real}"."{table}"'}
                ).scalar_one()
                if exists is None:
                    continue  # a catalog never migrated: the copy starts empty
                conn.execute(
                    sa.text(
                        f'CREATE TABLE "{scratch}"."{table}" '
                        f'(LIKE "{real}"."{table}" INCLUDING ALL)'
                    )
                )
                conn.execute(
                    sa.text(
                        f'INSERT INTO "{scratch}"."{table}" SELECT * FROM "{real}"."{table}"'
                    )
                )
    except BaseException:
        source.dispose()
        raise
    engine = sa.create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"options": f"-csearch_path={scratch}"},
    )

    def cleanup() -> None:
        engine.dispose()
        try:
            with source.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE'))
        finally:
            source.dispose()

    return engine, cleanup
