"""Content-addressed storage of document content, by SHA-256.

Each content is stored once, at ``blobs/ab/cd/abcdef...``. Writes go to a
temporary file that is fsynced and renamed into place, so a blob file is
either complete or absent; a crash leaves at most an orphan temporary file,
removed at the next start. Blobs are written *before* the catalog row that
refers to them is committed, so a committed row always has its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from .private import make_private_dir

CHUNK = 1024 * 1024
STALE_AFTER_S = 3600


class BlobStore:
    """Stores and finds content by its SHA-256."""

    def __init__(self, root: Path, *, write: bool = True) -> None:
        self.root = root
        self.write = write
        self._tmp = root / "tmp"
        # Plain strings for the per-blob path arithmetic: pathlib's joins
        # were a visible share of an import's CPU time.
        self._root_str = str(root)
        self._tmp_str = str(self._tmp)
        if write:
            make_private_dir(root)
            self._tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._clean_temporaries()

    def path(self, sha256: str) -> Path:
        """Where the content with this hash lives."""
        return Path(self._path_str(sha256))

    @property
    def location(self) -> str:
        """The store as messages name it."""
        return str(self.root)

    def holds_any(self) -> bool:
        """Whether any content is stored (see :func:`holds_blobs`)."""
        return holds_blobs(self.root)

    def _path_str(self, sha256: str) -> str:
        return f"{self._root_str}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        return os.path.exists(self._path_str(sha256))

    def put(self, content: bytes | Path | BinaryIO) -> tuple[str, int]:
        """Store ``content`` (bytes, a file to copy, or an open binary file
        read from its start); return (sha256, size).

        With ``write=False`` (dry runs) only the hash is computed.
        """
        if isinstance(content, bytes):
            sha = hashlib.sha256(content).hexdigest()
            if self.write and not self.exists(sha):
                self._store(sha, content)
            return sha, len(content)
        if isinstance(content, Path):
            with content.open("rb") as src:
                return self._copy_stream(src) if self.write else _hash_stream(src)
        # An open handle (the folder source's): read it, never its path again.
        content.seek(0)
        return self._copy_stream(content) if self.write else _hash_stream(content)

    def _copy_stream(self, src: IO[bytes]) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = self._temporary()
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            target = self._path_str(sha)
            if os.path.exists(target):
                os.unlink(tmp_name)
            else:
                _replace_making_parent(tmp_name, target)
            return sha, size
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def _temporary(self) -> tuple[int, str]:
        """A new temporary file in ``tmp/`` (what ``tempfile.mkstemp`` does, cheaper)."""
        while True:
            name = f"{self._tmp_str}/blob-{secrets.token_hex(8)}"
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(name, flags, 0o600)
            except FileExistsError:
                continue  # 64 random bits collided: practically never
            return fd, name

    def _store(self, sha: str, data: bytes) -> None:
        target = self._path_str(sha)
        fd, tmp_name = self._temporary()
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            _replace_making_parent(tmp_name, target)
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


def _hash_stream(src: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _replace_making_parent(tmp_name: str, target: str) -> None:
    """Rename ``tmp_name`` to ``target``, creating its folder only if missing.

    Once the 65,536 fan-out folders exist, the rename alone suffices: trying
    it first saves a mkdir and a stat per blob.
    """
    try:
        os.replace(tmp_name, target)
    except FileNotFoundError:
        if not os.path.exists(tmp_name):
            raise
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        os.replace(tmp_name, target)


class RemoteBlobStore:
    """The same content-addressed layout in an object store (``s3://bucket/prefix``)
    or any other fsspec file system, for nodes that share no disk.

    A PUT of an object is atomic (readers see all of it or nothing) and the key
    is the content's hash, so "write, then commit the row" holds as on disk: a
    committed row always has its content, and a crash leaves at most an object
    no row refers to. Exports read through a small local cache
    (``cache/ab/cd/<sha256>``, verified against the hash, oldest files evicted).
    Credentials and the endpoint come from the usual environment
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for
    MinIO, Ceph or Garage), never from the configuration file.
    """

    CACHE_FILES = 512

    def __init__(self, url: str, cache: Path, *, write: bool = True) -> None:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                f"blobs: {url} needs fsspec and s3fs: pip install 'invoicesync[cluster]'"
            ) from exc
        self.url = url.rstrip("/")
        self.write = write
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self._root = root.rstrip("/")
        self._cache_dir = cache
        self._cache_store: BlobStore | None = None

    @property
    def _cache(self) -> BlobStore:
        # Made on first export only: a dry run must not create it.
        if self._cache_store is None:
            self._cache_store = BlobStore(self._cache_dir, write=True)
        return self._cache_store

    def _key(self, sha256: str) -> str:
        return f"{self._root}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    @property
    def location(self) -> str:
        """The store as messages name it."""
        return self.url

    def holds_any(self) -> bool:
        """Whether any content is stored: a few listings, stopping at the first blob."""
        try:
            for first in self.fs.ls(self._root, detail=False):
                if len(first.rstrip("/").rsplit("/", 1)[-1]) != 2:
                    continue
                for second in self.fs.ls(first, detail=False):
                    if self.fs.ls(second, detail=False):
                        return True
        except FileNotFoundError:
            return False
        return False

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._key(sha256)))

    def put(self, content: bytes | Path | BinaryIO) -> tuple[str, int]:
        """Store ``content``; return (sha256, size). Hash only when ``write=False``."""
        if isinstance(content, bytes):
            data = content
        elif isinstance(content, Path):
            data = content.read_bytes()
        else:  # an open handle (the folder source's): read it, never its path again
            content.seek(0)
            data = content.read()
        sha = hashlib.sha256(data).hexdigest()
        if self.write and not self.exists(sha):
            self.fs.pipe_file(self._key(sha), data)
        return sha, len(data)

    def path(self, sha256: str) -> Path:
        """A local file with this content (downloaded once into the cache)."""
        if not self._cache.exists(sha256):
            data = self.fs.cat_file(self._key(sha256))
            if hashlib.sha256(data).hexdigest() != sha256:
                raise OSError(f"blob {sha256} in {self.url} does not match its hash")
            self._cache.put(data)
            self._evict()
        return self._cache.path(sha256)

    def _evict(self) -> None:
        files = [p for p in self._cache.root.glob("??/??/*") if p.is_file()]
        if len(files) <= self.CACHE_FILES:
            return
        files.sort(key=lambda p: p.stat().st_mtime)
        for old in files[: len(files) - self.CACHE_FILES]:
            with contextlib.suppress(OSError):
                old.unlink()


class Blobs(Protocol):
    """What the catalog and the exporter need of a blob store."""

    write: bool

    def put(self, content: bytes | Path | BinaryIO) -> tuple[str, int]: ...

    def path(self, sha256: str) -> Path: ...

    def exists(self, sha256: str) -> bool: ...

    @property
    def location(self) -> str:
        """The store as messages name it (a folder or a URL)."""
        ...

    def holds_any(self) -> bool:
        """Whether any content is stored (a lost catalog is refused, see schema_guard)."""
        ...


def open_blob_store(configured: str | None, state_dir: Path, *, write: bool = True) -> Blobs:
    """The blob store the configuration names: ``blobs:`` as a folder or a URL,
    else ``STATE/blobs``. Folders (``file://`` URLs too) use :class:`BlobStore`."""
    if configured is None:
        return BlobStore(state_dir / "blobs", write=write)
    if configured.startswith("file://"):
        return BlobStore(Path(configured[len("file://") :]), write=write)
    if "://" not in configured:
        return BlobStore(Path(configured), write=write)
    return RemoteBlobStore(configured, state_dir / "blob-cache", write=write)


def holds_blobs(root: Path) -> bool:
    """Whether the blob store at ``root`` holds any content (stops at the first blob).

    An empty catalog beside a non-empty blob store means a lost catalog
    (see :mod:`.schema_guard`).
    """
    try:
        level1 = [e for e in os.scandir(root) if len(e.name) == 2 and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return False
    for first in level1:
        for second in os.scandir(first.path):
            if len(second.name) != 2 or not second.is_dir():
                continue
            with os.scandir(second.path) as entries:
                if any(len(e.name) == 64 and e.name.startswith(first.name) for e in entries):
                    return True
    return False
