"""The state folder is private: 0700, its files 0600, whatever the umask.

It holds the catalog (every document's metadata), the content of every
document and the ledger's error texts. Files created inside it get their mode
from the umask (SQLite's, a lock's) or from an explicit 0600 (blobs); a 0700
folder makes the umask irrelevant for everyone but the owner.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["make_private_dir", "make_private_file"]


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) if needed; a folder created here is 0700.

    An existing folder keeps its mode: systemd's ``StateDirectory=`` (or the
    administrator) may have chosen it on purpose.
    """
    if path.is_dir():
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask; set it exactly.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


def make_private_file(path: Path) -> None:
    """Tighten an existing file to 0600 (SQLite creates its files per the umask).

    SQLite gives a database's -wal and -shm files the database file's own
    mode, so tightening the database file once covers those created later.
    """
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
