"""``invoicesync backup``: a consistent copy of the state folder while the daemon runs.

The catalog, the ledger and the run log are one SQLite database; it is copied
with SQLite's online backup API, which reads a consistent snapshot page by page
while other processes keep writing (a plain ``cp`` of a live WAL database can
tear). Content blobs are immutable and named by their hash, and every blob a
catalog row refers to was written before that row committed, so copying the
blob folder *after* the snapshot gives every row of the snapshot its content
(blobs written meanwhile are extra and harmless). Connectors' own state
(cursors, ``state/connectors``) is copied last: an older cursor only makes a
source fetch again what the catalog then recognises as unchanged.

PostgreSQL catalogs are backed up with ``pg_dump`` instead (docs/operations.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

CATALOG = "catalog.sqlite3"


class BackupError(Exception):
    """The backup cannot be taken; the message says why and what to do."""


@dataclass(frozen=True)
class BackupSummary:
    """What a backup contains."""

    path: Path
    catalog_bytes: int
    blobs: int
    blob_bytes: int


def _copy_tree(source: Path, target: Path, skip: frozenset[str] = frozenset()) -> tuple[int, int]:
    """Copy the files below ``source``; (files, bytes). Files that vanish meanwhile are skipped."""
    files = size = 0
    if not source.is_dir():
        return files, size
    for folder, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not (Path(folder) == source and d in skip))
        rel = Path(folder).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(names):
            src = Path(folder) / name
            try:
                shutil.copy2(src, target / rel / name)
            except FileNotFoundError:  # a temporary file that was renamed or removed
                continue
            files += 1
            size += (target / rel / name).stat().st_size
    return files, size


def backup_state(
    state: Path, database_url: str, target: Path, blobs: Path | None = None
) -> BackupSummary:
    """Write a restorable copy of the state folder ``state`` into the new folder ``target``.

    ``blobs`` is the content folder when ``blobs:`` names one outside the
    state folder (copied into ``target/blobs`` all the same); a remote blob
    store (``s3://...``) is left to its own backups: pass ``Path()``.
    """
    url = sa.make_url(database_url)
    if not url.drivername.startswith("sqlite"):
        raise BackupError(
            f"the catalog is in {url.drivername.split('+')[0]}, not SQLite: back it up with "
            "pg_dump (e.g. `pg_dump -Fc -f invoicesync.dump DBNAME`) and copy the blobs "
            f"folder {state / 'blobs'}; see docs/operations.md"
        )
    database = Path(url.database or "")
    if not database.is_file():
        raise BackupError(f"no catalog at {database}: nothing to back up yet")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not an empty folder; give a new one")
    target.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    copy = sqlite3.connect(target / CATALOG)
    try:
        # Pages in steps: writers are blocked only for one step at a time, and
        # the copy restarts by itself when another connection wrote meanwhile.
        source.backup(copy, pages=1024)
    except sqlite3.Error as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise BackupError(f"cannot read the catalog {database}: {exc}") from exc
    finally:
        copy.close()
        source.close()
    source_blobs = state / "blobs" if blobs is None else blobs
    count, blob_bytes = (
        _copy_tree(source_blobs, target / "blobs", skip=frozenset({"tmp"}))
        if source_blobs != Path()
        else (0, 0)
    )
    _copy_tree(state / "connectors", target / "connectors")
    return BackupSummary(target, (target / CATALOG).stat().st_size, count, blob_bytes)
