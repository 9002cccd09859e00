"""Content-addressed storage of document content, by SHA-256.

Each content is stored once, at ``blobs/ab/cd/abcdef...``. Writes go to a
temporary file that is fsynced and renamed into place, so a blob file is
either complete or absent; a crash leaves at most an orphan temporary file,
removed at the next start. Blobs are written *before* the catalog row that
refers to them is committed, so a committed row always has its content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO

CHUNK = 1024 * 1024
STALE_AFTER_S = 3600


class BlobStore:
    """Stores and finds content by its SHA-256."""

    def __init__(self, root: Path, *, write: bool = True) -> None:
        self.root = root
        self.write = write
        self._tmp = root / "tmp"
        if write:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._clean_temporaries()

    def path(self, sha256: str) -> Path:
        """Where the content with this hash lives."""
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(self, content: bytes | Path) -> tuple[str, int]:
        """Store ``content`` (bytes or a file to copy); return (sha256, size).

        With ``write=False`` (dry runs) only the hash is computed.
        """
        if isinstance(content, bytes):
            sha = hashlib.sha256(content).hexdigest()
            if self.write and not self.exists(sha):
                self._store(sha, content)
            return sha, len(content)
        if not self.write:
            return self._hash_file(content)
        with content.open("rb") as src:
            return self._copy_stream(src)

    def _hash_file(self, path: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def _copy_stream(self, src: IO[bytes]) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            target = self.path(sha)
            if target.exists():
                os.unlink(tmp_name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, target)
            return sha, size
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def _store(self, sha: str, data: bytes) -> None:
        target = self.path(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def _clean_temporaries(self) -> None:
        # Only old leftovers: another invoicesync process (a `fetch` beside the
        # daemon) may be writing a fresh one right now.
        cutoff = time.time() - STALE_AFTER_S
        for leftover in self._tmp.glob("blob-*"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                pass
