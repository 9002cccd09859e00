"""The ``folder`` target: export documents into a local directory tree.

Every write is atomic: the content goes to a hidden temporary file in the
destination folder (``.<name>.invoicesync-tmp-<random>``), then is renamed
over the final name with ``os.replace``. A reader therefore sees either the
old file or the complete new one, never half a file, and exporting the same
name again replaces it (idempotent).

Durability is group-committed (plugin API 1.3, ``defers_durability``): an
export does not fsync a new file or its folder; :meth:`FolderTarget.barrier`,
which the engine calls once per batch before it records the batch as
exported, makes them durable with one ``syncfs`` per file system touched (or,
where there is no ``syncfs``, an fsync of each file and folder written). A
file that *replaces* an earlier one is still fsync'ed before its rename, so
even a power cut never leaves a broken file where a good one was. With the
option ``fsync: false`` nothing is fsync'ed at all.

A process killed in the middle of a write (kill -9, power loss) can leave a
temporary file behind; :func:`cleanup_temp_files` removes those, and the
target calls it on its first ``check()`` or export in each run (two accounts
should not share one folder: a run may remove the other's fresh temporary
file, which makes that write fail and be retried).

Remote names come from the engine's sanitiser already; the target checks
them again anyway (defence in depth) and walks the destination folders with
directory file descriptors, so neither a hostile name nor a symbolic link
planted inside the root can make it write outside the root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from invoicesync.plugins import (
    MAX_COMPONENT_BYTES,
    ConnectorError,
    ConnectorOptions,
    ExportItem,
    ExportResult,
    PermanentError,
    RelativePath,
    Target,
    TransientError,
    split_remote_name,
)
from pydantic import Field

__all__ = ["TEMP_MARKER", "FolderTarget", "FolderTargetOptions", "cleanup_temp_files"]

TEMP_MARKER = ".invoicesync-tmp-"
"""Part of every temporary file name this target creates (and only those)."""

_PROCESS_START = time.time()

# Root -> when its leftovers were last removed. The engine builds a new target
# for every run, and each run (holding its account's run lock, so no other
# writer of this account is active) removes what is older than its own start:
# with several nodes a killed node's temporary files are newer than the
# surviving nodes' process start, but older than the run that takes over.
_CLEANED_ROOTS: dict[str, float] = {}
_CLEANED_LOCK = threading.Lock()
_CHUNK = 1024 * 1024
_NAME_MAX = MAX_COMPONENT_BYTES
_SIDECAR_SUFFIX = ".json"

# Errors that say "this name can never be written here": retrying is useless.
_PERMANENT_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EINVAL, errno.EILSEQ}
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

# Errors of copy_file_range that mean "not between these two files": copy by
# reading and writing instead.
_NO_COPY_RANGE = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.EBADF}
)


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(fd)`` (Linux), or None where there is none."""
    if not hasattr(os, "copy_file_range"):  # a Linux-only call: not Linux
        return None
    import ctypes  # only where it is used: a barrier, once per process

    try:
        func = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int

    def syncfs(fd: int) -> int:
        if func(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return 0

    return syncfs


_SYNCFS: list[Callable[[int], int] | None] = []  # loaded on the first barrier


class FolderTargetOptions(ConnectorOptions):
    """Options of the ``folder`` target."""

    path: RelativePath = Field(description="The export folder (relative to the config file).")
    sidecar: bool = Field(
        default=False, description="Also write <name>.json with the document's metadata."
    )
    fsync: bool = Field(
        default=True,
        description=(
            "Make exports durable (one syncfs or fsyncs per batch); "
            "turn off only for throw-away exports."
        ),
    )


def cleanup_temp_files(root: Path, older_than: float | None = None) -> int:
    """Delete this target's leftover temporary files below ``root``.

    Only hidden files whose name contains :data:`TEMP_MARKER` and whose
    modification time is before ``older_than`` (default: when this process
    started, so a concurrent writer's fresh files survive) are removed.
    Symbolic links are not followed. Returns how many files were removed;
    unreadable folders are skipped.
    """
    cutoff = _PROCESS_START if older_than is None else older_than
    removed = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif (
                    entry.name.startswith(".")
                    and TEMP_MARKER in entry.name
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # removed meanwhile: fine
            except OSError:
                continue  # not ours to fix; the next cleanup tries again
    return removed


def _shorten(name: str, max_bytes: int) -> str:
    """Cut ``name`` to at most ``max_bytes`` UTF-8 bytes, keeping its extension."""
    raw = name.encode("utf-8")
    if len(raw) <= max_bytes:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode("utf-8")) > 16:
        stem, ext = name, ""
    keep = max_bytes - (len(ext.encode("utf-8")) + 1 if ext else 0)
    short = stem.encode("utf-8")[:keep].decode("utf-8", "ignore")
    return f"{short}.{ext}" if ext else short


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class FolderTarget(Target[FolderTargetOptions]):
    """Write documents below a local folder, atomically."""

    type_name = "folder"
    Options = FolderTargetOptions
    description = "A local folder (atomic writes, optional JSON sidecars)"
    defers_durability = True
    _resolved_root: str | None = None
    _started: float | None = None  # when this instance (this run) first used its root

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the next barrier must make durable, from any export thread:
        # one open folder per file system (for syncfs), and the paths of the
        # files and folders written (for fsyncs where there is no syncfs).
        self._dirty_lock = threading.Lock()
        self._dirty_fs: dict[int, int] = {}
        self._dirty_paths: list[str] = []

    def barrier(self) -> None:
        """Make every export that returned so far durable (see the module docs)."""
        with self._dirty_lock:
            folders, self._dirty_fs = self._dirty_fs, {}
            paths, self._dirty_paths = self._dirty_paths, []
        if not _SYNCFS:
            _SYNCFS.append(_load_syncfs())
        syncfs = _SYNCFS[0]
        try:
            if syncfs is not None:
                for fd in folders.values():
                    syncfs(fd)
            else:
                for path in dict.fromkeys(paths):
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        except OSError as exc:
            raise TransientError(f"making the exports durable failed: {exc.strerror}") from None
        finally:
            for fd in folders.values():
                os.close(fd)

    def close(self) -> None:
        with self._dirty_lock:
            folders, self._dirty_fs = self._dirty_fs, {}
        for fd in folders.values():
            os.close(fd)

    # -- connector API ----------------------------------------------------------

    def check(self) -> None:
        """The root must be a writable folder, or creatable in a writable one.

        Writes and deletes a probe file in an existing root; a missing root
        is not created here (check-config changes nothing), only on export.
        """
        path = self.options.path
        if not os.path.lexists(path):
            parent = path.parent
            while not os.path.lexists(parent) and parent != parent.parent:
                parent = parent.parent
            if not os.path.isdir(parent):
                raise ConnectorError(
                    f"folder target {self.id}: cannot create {path}: {parent} is not a folder"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConnectorError(
                    f"folder target {self.id}: cannot create {path}: {parent} is not writable"
                )
            return
        root = self._root(error=ConnectorError)
        probe = os.path.join(root, f"{TEMP_MARKER}probe-{secrets.token_hex(6)}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, b"invoicesync write probe\n")
            finally:
                os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConnectorError(
                f"folder target {self.id}: cannot write in {root}: {exc.strerror}"
            ) from None

    def sanitize_component(self, component: str) -> str:
        """Keep names short enough that ``<name>.json`` still fits in 255 bytes."""
        if self.options.sidecar:
            return _shorten(component, _NAME_MAX - len(_SIDECAR_SUFFIX))
        return component

    def export(self, item: ExportItem) -> ExportResult:
        """Write ``item`` to ``path / item.remote_name`` atomically (see module docs)."""
        parts = split_remote_name(item.remote_name)
        if self.options.sidecar and len(parts[-1].encode()) + len(_SIDECAR_SUFFIX) > _NAME_MAX:
            raise PermanentError(
                f"refusing remote name {item.remote_name!r}: too long to add a .json sidecar"
            )
        dir_fd, folder, created = self._open_parent(
            self._cached_root(), parts[:-1], item.remote_name
        )
        written = [parts[-1]]
        try:
            # A plain file's content is copied inside the kernel; an item
            # that overrides open() (a stream) is read through it.
            content = item.content_path if type(item).open is ExportItem.open else item.open
            self._write_atomic(dir_fd, parts[-1], content)
            if self.options.sidecar:
                written.append(parts[-1] + _SIDECAR_SUFFIX)
                self._write_atomic(dir_fd, written[-1], _sidecar_json(item))
            if self.options.fsync:
                self._dirty(dir_fd, folder, written, created)
        except OSError as exc:
            raise _map_os_error(exc, f"writing {item.remote_name!r}") from None
        finally:
            os.close(dir_fd)
        return ExportResult(remote_ref="/".join(parts))

    # -- helpers ----------------------------------------------------------------

    def _dirty(self, dir_fd: int, folder: str, names: list[str], created: list[str]) -> None:
        """Remember what the next :meth:`barrier` must make durable."""
        dev = os.fstat(dir_fd).st_dev
        with self._dirty_lock:
            if dev not in self._dirty_fs:
                self._dirty_fs[dev] = os.dup(dir_fd)
            # Folders after their files; a new folder's entry is in its parent.
            self._dirty_paths += [os.path.join(folder, n) for n in names]
            self._dirty_paths += [folder, *created]

    def _cached_root(self) -> str:
        """The root as :meth:`_root` made it, checked once per target instance.

        A later export that finds the root gone (an unmounted share) calls
        :meth:`_root` again, which recreates it or fails as before.
        """
        root = self._resolved_root
        if root is None or not os.path.isdir(root):
            root = self._resolved_root = self._root(error=TransientError)
        return root

    def _root(self, *, error: type[ConnectorError]) -> str:
        """The resolved root folder, created if missing; stale temp files removed once."""
        path = self.options.path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise error(f"folder target {self.id}: {path} exists and is not a folder") from None
        except OSError as exc:
            raise error(f"folder target {self.id}: cannot create {path}: {exc.strerror}") from None
        root = os.path.realpath(path)
        if not os.path.isdir(root):
            raise error(f"folder target {self.id}: {path} is not a folder")
        if self._started is None:
            self._started = time.time()
        started = self._started
        with _CLEANED_LOCK:
            if _CLEANED_ROOTS.get(root, 0.0) < started:
                _CLEANED_ROOTS[root] = time.time()
                cleanup_temp_files(Path(root), older_than=started)
        return root

    def _open_parent(
        self, root: str, folders: list[str], remote_name: str
    ) -> tuple[int, str, list[str]]:
        """Open (creating as needed) the folder that will hold the file.

        Returns its descriptor, its path and the folders that gained a new
        entry (the parents of folders created here). Walks one component at
        a time relative to a directory descriptor, so a folder swapped for a
        symlink mid-way cannot redirect the write. A symlink found inside the
        root is followed only if it resolves inside.
        """
        fd = os.open(root, _DIR_FLAGS)
        current = root
        created: list[str] = []
        try:
            for name in folders:
                # Usually the folder exists already: try opening it before
                # creating it (one system call instead of two per component).
                try:
                    next_fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except OSError:
                    pass  # missing, a link or a file: the careful path below
                else:
                    os.close(fd)
                    fd, current = next_fd, os.path.join(current, name)
                    continue
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                    created.append(current)  # its entry must survive a crash too
                except FileExistsError:
                    pass
                try:
                    next_fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                    next_path = os.path.join(current, name)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise PermanentError(
                            f"cannot export {remote_name!r}: "
                            f"{os.path.join(current, name)} is a file, not a folder"
                        ) from None
                    next_path = os.path.realpath(os.path.join(current, name))
                    if not _is_within(next_path, root):
                        raise PermanentError(
                            f"refusing {remote_name!r}: {os.path.join(current, name)} is a "
                            "symbolic link that leads outside the target folder"
                        ) from None
                    next_fd = os.open(next_path, _DIR_FLAGS)
                os.close(fd)
                fd, current = next_fd, next_path
        except PermanentError:
            os.close(fd)
            raise
        except OSError as exc:
            os.close(fd)
            raise _map_os_error(exc, f"creating the folders of {remote_name!r}") from None
        return fd, current, created

    def _write_atomic(
        self, dir_fd: int, name: str, content: Path | bytes | Callable[[], IO[bytes]]
    ) -> None:
        """Write ``content`` (a file, bytes or a stream opener) to ``name`` atomically.

        No fsync of a new file (the barrier makes it durable); a file that
        replaces another is fsync'ed before the rename, so that not even a
        power cut can put a broken file in place of a good one.
        """
        tmp = f".{_shorten(name, 200)}{TEMP_MARKER}{secrets.token_hex(6)}"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o666,
            dir_fd=dir_fd,
        )
        try:
            try:
                if isinstance(content, bytes):
                    _write_all(fd, content)
                elif isinstance(content, Path):
                    self._copy_file(content, fd)
                else:
                    with os.fdopen(os.dup(fd), "wb", buffering=0) as out:
                        self._copy(content, out)
                if self.options.fsync and _exists(name, dir_fd):
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            # Whatever went wrong (a broken stream, a full disk, shutdown),
            # nothing half-written stays behind.
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise

    def _copy_file(self, path: Path, out: int) -> None:
        """Copy the file at ``path`` into ``out`` in the kernel (copy_file_range)."""
        try:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise TransientError(f"cannot open the document content: {exc.strerror}") from None
        try:
            copied = 0
            copy_range = getattr(os, "copy_file_range", None)
            while copy_range is not None:
                if self.context.stop.is_set():
                    raise TransientError("shutting down; the export is abandoned")
                try:
                    n = copy_range(src, out, _CHUNK)
                except OSError as exc:
                    if copied or exc.errno not in _NO_COPY_RANGE:
                        raise
                    break  # not between these files: read and write below
                if not n:
                    return
                copied += n

            def reopen() -> IO[bytes]:  # the same descriptor, read from where it is
                return os.fdopen(src, "rb", buffering=0, closefd=False)

            self._copy(reopen, _FdWriter(out))
        finally:
            os.close(src)

    def _copy(self, opener: Callable[[], IO[bytes]], out: Any) -> None:
        try:
            src = opener()
        except OSError as exc:
            raise TransientError(f"cannot open the document content: {exc.strerror}") from None
        with src:
            while True:
                if self.context.stop.is_set():
                    raise TransientError("shutting down; the export is abandoned")
                try:
                    chunk = src.read(_CHUNK)
                except ConnectorError:
                    raise
                except Exception as exc:
                    # Any failure of the content stream is the source side's
                    # problem, not this document's: retry later.
                    raise TransientError(
                        f"reading the document content failed: {type(exc).__name__}: {exc}"
                    ) from None
                if not chunk:
                    return
                view = memoryview(chunk)
                while view:
                    written = out.write(view)
                    view = view[written or 0 :]


class _FdWriter:
    """``write()`` onto a raw descriptor (for :meth:`FolderTarget._copy`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: memoryview) -> int:
        return os.write(self.fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _exists(name: str, dir_fd: int) -> bool:
    """Whether ``name`` is already there (a replacement, not a new file)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _sidecar_json(item: ExportItem) -> bytes:
    """The document's catalog entry as JSON (it holds no secrets)."""
    data = item.document.model_dump(mode="json")
    data["tags"] = sorted(data.get("tags") or [])  # a set: sort for stable output
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _map_os_error(exc: OSError, doing: str) -> ConnectorError:
    message = f"{doing} failed: {exc.strerror or exc}"
    if exc.errno in _PERMANENT_ERRNOS:
        return PermanentError(message)
    return TransientError(message)
