"""Content-addressed storage of document content, by SHA-256.

Each content is stored once, at ``blobs/ab/cd/abcdef...``. Writes go to a
temporary file that is fsynced and renamed into place, so a blob file is
either complete or absent; a crash leaves at most an orphan temporary file,
removed at the next start. Blobs are made durable *before* the catalog row
that refers to them is committed, so a committed row always has its content.

Imports write many blobs at once through a :class:`BlobBatch`: each
:meth:`~BlobBatch.put` reads, hashes and writes its temporary in the calling
thread (the source's file is only valid until it yields the next document),
while a small thread pool fsyncs each temporary and renames it into place
(fsync releases the GIL, so these overlap with reading the next documents).
:meth:`~BlobBatch.settle` is the batch's durability barrier: it waits for
them, then fsyncs each fan-out folder that received or holds one of the
batch's blobs (and, once per process or after creating it, that folder's
parent), so the renames themselves survive a power loss before the catalog
commits the rows.
A blob left behind by a crash before that commit is complete (it was renamed
only after its fsync) and harmless: the next import finds it by its hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from .private import make_private_dir

CHUNK = 1024 * 1024
STALE_AFTER_S = 3600
#: Threads that fsync and rename a batch's blobs (and fsync its folders): fsyncs
#: in flight together share the file system's journal commits.
SYNC_THREADS = 4


class BlobBatch(Protocol):
    """Blobs written now and made durable together (see the module docs)."""

    def put(self, content: bytes | Path | BinaryIO) -> tuple[str, int]:
        """Store ``content`` (as :meth:`BlobStore.put`); durable only after :meth:`settle`."""
        ...

    def settle(self) -> dict[str, OSError]:
        """The durability barrier: every blob put so far is durable, except
        those in the returned mapping (sha256 -> why not). Starts a new batch."""
        ...


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
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Fan-out folders whose entry in their parent this process fsynced.
        self._durable: set[str] = set()
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
        read from its start) durably; return (sha256, size).

        With ``write=False`` (dry runs) only the hash is computed.
        """
        batch = self.batch()
        sha, size = batch.put(content)
        failed = batch.settle()
        if sha in failed:
            raise failed[sha]
        return sha, size

    def batch(self) -> BlobBatch:
        """A batch of blobs made durable together (see the module docs)."""
        return _LocalBatch(self) if self.write else _ImmediateBatch(_hash_only)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="blob-sync")
            return self._pool

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

    def _make_leaf(self, sha: str) -> list[str]:
        """Create ``ab/cd/`` for ``sha``; the folders that were missing."""
        created = []
        for folder in (f"{self._root_str}/{sha[:2]}", f"{self._root_str}/{sha[:2]}/{sha[2:4]}"):
            try:
                os.mkdir(folder, 0o700)
                created.append(folder)
            except FileExistsError:
                pass
        return created

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


class _LocalBatch:
    """A :class:`BlobBatch` of a :class:`BlobStore` (see the module docs)."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._pending: list[tuple[str, Future[list[str]]]] = []
        self._present: list[str] = []  # already stored: their folder is fsynced too

    def put(self, content: bytes | Path | BinaryIO) -> tuple[str, int]:
        if isinstance(content, bytes):
            sha = hashlib.sha256(content).hexdigest()
            if self._store.exists(sha):
                self._present.append(sha)
            else:
                fd, tmp_name = self._store._temporary()
                try:
                    _write_all(fd, content)
                except BaseException:
                    _discard(fd, tmp_name)
                    raise
                self._later(fd, tmp_name, sha)
            return sha, len(content)
        if isinstance(content, Path):
            with content.open("rb") as src:
                return self._copy_stream(src)
        # An open handle (the folder source's): read it, never its path again.
        content.seek(0)
        return self._copy_stream(content)

    def _copy_stream(self, src: IO[bytes]) -> tuple[str, int]:
        # One read of the content: hashed while it is copied.
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = self._store._temporary()
        try:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                _write_all(fd, chunk)
        except BaseException:
            _discard(fd, tmp_name)
            raise
        sha = digest.hexdigest()
        if self._store.exists(sha):
            _discard(fd, tmp_name)
            self._present.append(sha)
        else:
            self._later(fd, tmp_name, sha)
        return sha, size

    def _later(self, fd: int, tmp_name: str, sha: str) -> None:
        try:
            future = self._store._executor().submit(_sync_and_place, self._store, fd, tmp_name, sha)
        except BaseException:
            _discard(fd, tmp_name)
            raise
        self._pending.append((sha, future))

    def settle(self) -> dict[str, OSError]:
        store = self._store
        failed: dict[str, OSError] = {}
        created: set[str] = set()
        for sha, future in self._pending:
            try:
                created.update(future.result())
            except OSError as exc:
                failed[sha] = exc
        placed = [s for s, _ in self._pending if s not in failed] + self._present
        self._pending, self._present = [], []
        # The folder of each blob (its new name); and, unless this process has
        # made it durable before, each folder's own entry in its parent: one
        # created by another process that was killed before its barrier may
        # never have been fsynced.
        folders: dict[str, list[str]] = {}  # folder to fsync -> the blobs that need it
        entries: dict[str, list[str]] = {}  # folder whose entry that makes durable -> blobs
        for sha in placed:
            leaf = os.path.dirname(store._path_str(sha))
            folders.setdefault(leaf, []).append(sha)
            for folder in (leaf, os.path.dirname(leaf)):
                if folder in created or folder not in store._durable:
                    parent = os.path.dirname(folder)
                    folders.setdefault(parent, []).append(sha)
                    entries.setdefault(folder, []).append(parent)
        if folders:
            synced = store._executor().map(_fsync_folder, folders)
            broken = set()
            for folder, error in zip(folders, synced, strict=True):
                if error is not None:
                    broken.add(folder)
                    for sha in folders[folder]:
                        failed.setdefault(sha, error)
            store._durable.update(f for f, parents in entries.items() if broken.isdisjoint(parents))
        return failed


class _ImmediateBatch:
    """A :class:`BlobBatch` whose puts are durable at once (an object store's
    PUT), or that only hashes (a dry run writes nothing)."""

    def __init__(self, put: Callable[[bytes | Path | BinaryIO], tuple[str, int]]) -> None:
        self.put = put

    def settle(self) -> dict[str, OSError]:
        return {}


def _hash_only(content: bytes | Path | BinaryIO) -> tuple[str, int]:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest(), len(content)
    if isinstance(content, Path):
        with content.open("rb") as src:
            return _hash_stream(src)
    content.seek(0)
    return _hash_stream(content)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _discard(fd: int, tmp_name: str) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp_name)


def _sync_and_place(store: BlobStore, fd: int, tmp_name: str, sha: str) -> list[str]:
    """fsync the temporary, then rename it into place (a pool thread); the
    fan-out folders it had to create."""
    try:
        os.fsync(fd)
        os.close(fd)
        fd = -1
        # Same content put twice in one batch: the second rename replaces a
        # complete file by an identical one. Once the 65,536 fan-out folders
        # exist, the rename alone suffices: it is tried first.
        target = store._path_str(sha)
        try:
            os.replace(tmp_name, target)
            return []
        except FileNotFoundError:
            if not os.path.exists(tmp_name):
                raise
        created = store._make_leaf(sha)
        os.replace(tmp_name, target)
        return created
    except BaseException:
        if fd >= 0:
            _discard(fd, tmp_name)
        else:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise


def _fsync_folder(folder: str) -> OSError | None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc
    return None


def _hash_stream(src: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


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

    def batch(self) -> BlobBatch:
        """Each PUT is atomic and durable by itself: nothing to settle."""
        return _ImmediateBatch(self.put)

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

    def batch(self) -> BlobBatch:
        """Blobs written now, made durable together by the batch's ``settle``."""
        ...

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
