"""The ``folder`` source: every file in a directory tree is a document.

Rules (also in docs/connectors/builtin.md):

- The external id is the file's POSIX path relative to ``path``; the walk is
  depth-first and yields the external ids in sorted (code-point) order -- a
  folder sorts as its name followed by ``/`` -- so fetches are deterministic
  and the catalog's fingerprints can be read alongside in sorted pages.
- Hidden and temporary files are ignored: names starting with ``.`` (this
  includes the folder target's own temporary files), ending in ``~``,
  ``.part``, ``.tmp`` or ``.crdownload``; hidden folders are not entered.
  Files that are not regular files (FIFOs, sockets, devices) are ignored too.
- A sidecar is a ``.json`` file beside a document named ``<name>.json``
  (``scan.pdf.json``, what the folder target writes) or ``<stem>.json``
  (``scan.json``); when both exist, ``<name>.json`` wins. A ``.json`` file that
  no other (non-JSON) file in its folder claims this way is not a sidecar: it
  is imported as a document of its own (a JSON e-invoice is a document too).
- A malformed sidecar yields a :class:`SkippedDocument` naming the sidecar and
  the JSON path of the bad value; the other files import.
- Files are read through handles, never by path (see :mod:`.handles`): each
  folder is opened relative to its parent's handle without following links,
  each file relative to its folder's handle with ``O_NOFOLLOW|O_NONBLOCK``,
  and the open handle must be a regular file; size, mtime, content and hash
  all come from that handle. A file or folder swapped for a symbolic link or
  a FIFO while the walk runs is judged by what it is when opened.
- A symbolic link to a file is followed only when it resolves inside
  ``path``; its target is then opened from the root's handle, component by
  component, without following links. A link that points outside, or
  nowhere, yields a skipped document saying so. Links to folders inside
  ``path`` are not entered (the folder is imported in its own place, and link
  loops cannot arise); links to folders outside are reported as skipped.
- Folders nested more than :data:`MAX_DEPTH` levels deep are reported and not
  entered.
- ``fingerprint`` is size, modification and change time (ns), inode and
  device of the file and of its sidecar (the *stat cache*). The walk takes
  them from the listing (``fstatat`` relative to the folder's handle, links
  not followed); when they equal what the catalog recorded at the last import
  (``context.known_fingerprint``), the file and its sidecar are neither opened
  nor parsed. Otherwise the file is opened and judged as described above, and
  the fingerprint comes from the handle. The change time is in the key
  because a file rewritten with the same size and its old mtime restored
  (``touch -r``, ``cp -p``, an unpacked archive) still gets a new ctime; the
  price is one re-read (and hash) of a file whose owner or mode changed. The
  inode catches a file atomically replaced by another of the same size and
  mtime; the device a different filesystem mounted in its place.
- ``stable_for``: a file whose size or mtime (or its sidecar's) changed less
  than this many seconds ago, by the source's clock, is left for a later
  fetch -- it may still be being written. It is not an error: it is logged at
  debug level (``document.deferred``) and :attr:`refetch_after` says when to
  look again (see :mod:`.stability` for how a future mtime is handled).
- ``watch``: :meth:`FolderSource.watch_spec` asks the daemon to watch the
  folder and fetch as soon as a (non-hidden, non-temporary) file or sidecar
  changes.
- No cursor: the whole tree is walked each time, and the catalog recognises
  what it already has by fingerprint and hash.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import re
import stat
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from invoicesync.plugins import (
    ConnectorError,
    ConnectorOptions,
    DocumentMetadata,
    FetchResult,
    RelativePath,
    SkippedDocument,
    Source,
    SourceDocument,
    TransientError,
    WatchSpec,
)
from pydantic import Field, WithJsonSchema, field_validator

from .handles import (
    SYMLINK_ERRNOS,
    NotRegularFile,
    Root,
    kind_of,
    open_dir_at,
    open_file_at,
    open_root,
)
from .sidecar import SidecarError, parse_sidecar_file
from .stability import StabilityTracker

__all__ = ["FolderSource", "FolderSourceOptions", "is_ignored_name"]

_TEMP_SUFFIXES = ("~", ".part", ".tmp", ".crdownload")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DEPTH = 100
"""Folders nested deeper are not entered: the walk holds one open handle per level."""

Item = SourceDocument | SkippedDocument


def is_ignored_name(name: str) -> bool:
    """True for hidden and temporary files that are never documents."""
    return name.startswith(".") or name.endswith(_TEMP_SUFFIXES)


class FolderSourceOptions(ConnectorOptions):
    """Options of the ``folder`` source."""

    path: RelativePath = Field(description="The folder to import (relative to the config file).")
    company: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Company id for documents whose sidecar names none.",
    )
    recursive: bool = Field(default=True, description="Also import files in sub-folders.")
    stable_for: Annotated[
        float,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "pattern": _DURATION.pattern},
                ],
                "examples": ["30s", "2m", 0],
            }
        ),
    ] = Field(
        default=0,
        ge=0,
        description=(
            "Seconds (or a duration like 30s, 2m) a file's size and modification time "
            "must stay unchanged before it is imported."
        ),
    )
    watch: bool = Field(
        default=False,
        description=(
            "Under `invoicesync run`, watch the folder and import new or changed "
            "files at once (besides any schedule)."
        ),
    )

    @field_validator("stable_for", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _DURATION.match(value)
            if not match:
                raise ValueError("expected seconds or a duration such as 30s, 15m, 1h")
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return value


@dataclass
class _Dir:
    """A folder being walked: its open handle, sorted entries and where we are in them."""

    rel: str  # POSIX path relative to the root, "" for the root itself
    fd: int  # the folder's own handle: every name below is opened relative to it
    entries: list[os.DirEntry[str]]
    by_name: dict[str, os.DirEntry[str]]  # empty when no .json file is here (no sidecars)
    claimed: set[str]  # .json names that are sidecars of some file here
    position: int = 0


class _Refused(Exception):
    """A file or link the walk will not read; ``quiet`` ones are no error."""

    def __init__(self, reason: str, *, quiet: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.quiet = quiet


def _sidecar_names(name: str) -> tuple[str, str]:
    """The two sidecar names a document may have, preferred one first."""
    stem, dot, _ = name.rpartition(".")
    return f"{name}.json", f"{stem if dot and stem else name}.json"


class FolderSource(Source[FolderSourceOptions]):
    """Import every file below a folder; optional JSON sidecars carry metadata."""

    type_name = "folder"
    Options = FolderSourceOptions
    description = "Files in a local folder, with optional JSON sidecars"
    # Nothing happens to a file after its yield: documents may be committed
    # in batches (the file is read before the generator is resumed).
    batch_commit = True

    def check(self) -> None:
        """The folder must exist and be listable."""
        self._root()

    def _root(self) -> Path:
        path = self.options.path
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ConnectorError(f"folder source {self.id}: {path} does not exist") from None
        except OSError as exc:
            raise ConnectorError(
                f"folder source {self.id}: cannot access {path}: {exc.strerror}"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise ConnectorError(f"folder source {self.id}: {path} is not a folder")
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            raise ConnectorError(
                f"folder source {self.id}: cannot list {path}: {exc.strerror}"
            ) from None
        return path.resolve()

    def watch_spec(self) -> WatchSpec | None:
        """With ``watch: true``: the folder, and which changed paths matter."""
        if not self.options.watch:
            return None
        root = Path(os.path.abspath(self.options.path))
        recursive = self.options.recursive

        def relevant(path: Path) -> bool:
            try:
                parts = path.relative_to(root).parts
            except ValueError:
                return True  # reported under another spelling of the root: look
            if not parts:
                return True  # the folder itself (re)appeared
            if not recursive and len(parts) > 1:
                return False
            # Hidden and temporary names are never documents; a hidden folder
            # is not entered. Sidecars (.json) do count: they carry metadata.
            if any(is_ignored_name(part) for part in parts):
                return False
            # The watcher (inotify through watchfiles) follows links to
            # folders, also outside the root; the walk never does, so a change
            # seen through a link is no reason to import.
            return not _through_link(root, parts[:-1])

        return WatchSpec(paths=(root,), recursive=recursive, relevant=relevant)

    def fetch(self, cursor: str | None) -> FetchResult:
        """Walk the folder and yield every document (see the module docs)."""
        self.refetch_after = None
        try:
            self._root()
            root = open_root(str(self.options.path))
        except ConnectorError as exc:
            # At fetch time a missing folder is usually an unmounted share:
            # worth retrying, unlike a typo found by check-config.
            raise TransientError(str(exc)) from None
        except OSError as exc:
            raise TransientError(
                f"folder source {self.id}: cannot open {self.options.path}: {exc.strerror}"
            ) from None
        tracker = (
            StabilityTracker(self.options.stable_for, self.context.state_dir)
            if self.options.stable_for > 0
            else None
        )
        try:
            yield from self._walk(root, tracker)
        finally:
            root.close()
        if tracker is not None:
            tracker.save()
            self.refetch_after = tracker.soonest
        return None

    # -- the walk -------------------------------------------------------------
    #
    # Every name is opened relative to its folder's handle, never by path, and
    # what was opened is judged by fstat of the handle, not by the listing
    # (see .handles): a name swapped for a link or a FIFO between listing and
    # opening is caught by the open itself.

    def _list(self, fd: int) -> list[os.DirEntry[str]]:
        """The entries of the folder open as ``fd``, ignored names left out, sorted.

        A folder sorts as its name followed by ``/``: then the depth-first walk
        yields external ids in code-point order (``a-b.pdf`` before ``a/x.pdf``),
        the order the catalog reads fingerprints in.
        """
        with os.scandir(fd) as it:
            return sorted((e for e in it if not is_ignored_name(e.name)), key=_walk_order)

    def _open_dir(self, fd: int, rel: str) -> _Dir:
        """List the folder open as ``fd`` (the new ``_Dir`` owns the handle)."""
        try:
            entries = self._list(fd)
        except BaseException:
            os.close(fd)
            raise
        # Sidecars are .json files: a folder without any (the common bulk
        # case) needs no name index and no claims, per file or in memory.
        by_name: dict[str, os.DirEntry[str]] = {}
        claimed: set[str] = set()
        if any(e.name.endswith(".json") for e in entries):
            by_name = {e.name: e for e in entries}
            for e in entries:
                # Only files claim sidecars: a folder "2025" does not make
                # "2025.json" a sidecar. (is_dir uses the d_type readdir gave.)
                if not e.name.endswith(".json") and not e.is_dir():
                    claimed.update(_sidecar_names(e.name))
        return _Dir(rel, fd, entries, by_name, claimed)

    def _walk(self, root: Root, tracker: StabilityTracker | None) -> Iterator[Item]:
        stack = [self._open_dir(os.dup(root.fd), "")]
        default_metadata = DocumentMetadata(company=self.options.company)
        try:
            while stack:
                current = stack[-1]
                if current.position >= len(current.entries):
                    os.close(stack.pop().fd)
                    continue
                entry = current.entries[current.position]
                current.position += 1
                rel = f"{current.rel}/{entry.name}" if current.rel else entry.name
                try:
                    if entry.is_symlink():
                        kind = "link"
                    elif entry.is_dir(follow_symlinks=False):
                        kind = "dir"
                    elif entry.is_file(follow_symlinks=False):
                        kind = "file"
                    else:
                        continue  # FIFOs, sockets, devices: never documents
                except OSError as exc:
                    yield SkippedDocument(_printable(rel), f"{rel}: cannot read: {exc.strerror}")
                    continue
                if kind == "dir":
                    if not self.options.recursive:
                        continue
                    if len(stack) >= MAX_DEPTH:
                        yield SkippedDocument(
                            _printable(rel),
                            f"{_printable(rel)}: folders nested more than {MAX_DEPTH} levels "
                            "deep are not entered",
                        )
                        continue
                    try:
                        folder = yield from self._enter(root, current, entry.name, rel)
                    except Exception as exc:  # a bug here must not end the walk
                        yield _unexpected(rel, exc)
                        continue
                    if folder is not None:
                        stack.append(folder)
                    continue
                if entry.name.endswith(".json") and entry.name in current.claimed:
                    continue  # a sidecar, read with its document
                if kind == "file":
                    unchanged = self._unchanged(current, entry, rel)
                    if unchanged is not None:
                        yield unchanged
                        continue
                try:
                    result = self._document(
                        root, current, entry.name, rel, kind == "link", tracker, default_metadata
                    )
                except Exception as exc:
                    # Whatever goes wrong with one file (a bug, a library's
                    # surprise) is that file's failure, never the end of the run.
                    result = _unexpected(rel, exc)
                if isinstance(result, SourceDocument):
                    content = result.content
                    try:
                        yield result
                    finally:
                        # The engine has stored it (or given up) once we are
                        # resumed: the handle has served its purpose.
                        if isinstance(content, io.BufferedReader):
                            content.close()
                elif result is not None:
                    yield result
        finally:
            for folder in stack:
                os.close(folder.fd)

    def _unchanged(self, folder: _Dir, entry: os.DirEntry[str], rel: str) -> SourceDocument | None:
        """The stat cache: a placeholder for a file the catalog has as it is now.

        The file's and its sidecar's stat come from the listing (``fstatat``
        relative to the folder's handle, no link followed: a name that became
        a link or a FIFO is not a regular file and takes the full path). When
        their fingerprint is the one recorded at the last import, nothing is
        opened: the engine recognises the fingerprint and reads neither the
        placeholder's content nor its metadata. None: read the file.
        """
        known = self.context.known_fingerprint
        try:
            rel.encode("utf-8")  # never recorded otherwise; the full path says why
            # os.stat with dir_fd, not entry.stat(): the same fstatat, but the
            # result is not cached on the entry -- a folder's entries live
            # while it is walked, and ~600 bytes of stat each would make
            # memory grow with the size of the largest folder.
            st = os.stat(entry.name, dir_fd=folder.fd, follow_symlinks=False)
            sidecar = self._find_sidecar(entry.name, folder)
            sc_st = None
            if sidecar is not None:
                if sidecar.is_symlink():
                    return None  # judged (and followed or not) by the full path
                sc_st = os.stat(sidecar.name, dir_fd=folder.fd, follow_symlinks=False)
        except (OSError, UnicodeEncodeError):
            return None
        if not stat.S_ISREG(st.st_mode) or (sc_st is not None and not stat.S_ISREG(sc_st.st_mode)):
            return None
        fingerprint = _fingerprint(st, sidecar.name if sidecar else None, sc_st)
        if known(rel) != fingerprint:
            return None
        return SourceDocument(
            external_id=rel,
            filename=entry.name,
            content=b"",
            # One shared (frozen) placeholder: building a model per file would
            # cost more than the rest of this path.
            metadata=_PLACEHOLDER,
            fingerprint=fingerprint,
        )

    def _enter(
        self, root: Root, parent: _Dir, name: str, rel: str
    ) -> Generator[Item, None, _Dir | None]:
        """Open and list the sub-folder ``name``; None (maybe with a skipped item) if not."""
        try:
            fd = open_dir_at(parent.fd, name)
        except FileNotFoundError:
            return None  # removed since the listing: nothing to import there
        except OSError as exc:
            if exc.errno not in SYMLINK_ERRNOS:
                yield SkippedDocument(
                    _printable(rel), f"{_printable(rel)}: cannot list folder: {exc.strerror}"
                )
                return None
            # Not a folder any more: swapped for a symbolic link (or a file)
            # since the listing. Judge it as what it is now, never enter it.
            try:
                fd, _st = self._open_member(root, parent, name, rel, link=True)
            except _Refused as refused:
                if not refused.quiet:
                    yield SkippedDocument(_printable(rel), f"{_printable(rel)}: {refused.reason}")
                return None
            except OSError as exc2:
                yield SkippedDocument(
                    _printable(rel), f"{_printable(rel)}: cannot read: {exc2.strerror}"
                )
                return None
            os.close(fd)
            yield SkippedDocument(
                _printable(rel),
                f"{_printable(rel)}: changed from a folder into a file while being read; "
                "it is looked at again at the next run",
            )
            return None
        try:
            return self._open_dir(fd, rel)
        except OSError as exc:
            yield SkippedDocument(
                _printable(rel), f"{_printable(rel)}: cannot list folder: {exc.strerror}"
            )
            return None

    def _open_member(
        self, root: Root, folder: _Dir, name: str, rel: str, *, link: bool
    ) -> tuple[int, os.stat_result]:
        """Open the file ``name`` of ``folder`` for reading: (handle, its fstat).

        A name listed as a regular file is opened without following links; if
        it has become a link since, or was listed as one (``link``), the link
        is resolved once and, when it leads inside the root, its target is
        opened from the root's handle without following any further link.
        Raises :class:`_Refused` (with the reason) or :class:`OSError`.
        """
        if not link:
            try:
                return open_file_at(folder.fd, name)
            except NotRegularFile as exc:
                raise _Refused(
                    f"is {kind_of(exc.mode)} now, not a regular file; not read"
                ) from None
            except OSError as exc:
                if exc.errno not in SYMLINK_ERRNOS:
                    raise
                # A symbolic link now, though listed as a file: judge it as one.
        target = os.path.realpath(os.path.join(root.real, rel))
        inner = root.inside(target)
        if inner is None:
            raise _Refused(f"symbolic link points outside the folder {root.real}; not followed")
        if not inner:
            raise _Refused("link to the folder itself", quiet=True)
        try:
            return root.open_beneath(inner)
        except FileNotFoundError:
            raise _Refused("broken symbolic link") from None
        except NotRegularFile:
            # A link to a folder inside: that folder is imported in its own
            # place (following the link too would import it twice, or loop).
            # FIFOs and devices are never documents.
            raise _Refused("link to something not a file", quiet=True) from None
        except OSError as exc:
            if exc.errno in SYMLINK_ERRNOS:
                raise _Refused("symbolic link changed while being read; not followed") from None
            raise

    def _document(
        self,
        root: Root,
        folder: _Dir,
        name: str,
        rel: str,
        link: bool,
        tracker: StabilityTracker | None,
        metadata: DocumentMetadata,
    ) -> SourceDocument | SkippedDocument | None:
        shown = _printable(rel)
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            return SkippedDocument(shown, f"{shown}: file name is not valid UTF-8; rename it")
        try:
            fd, st = self._open_member(root, folder, name, rel, link=link)
        except FileNotFoundError:
            return None  # removed since the listing
        except _Refused as refused:
            return None if refused.quiet else SkippedDocument(shown, f"{shown}: {refused.reason}")
        except OSError as exc:
            return SkippedDocument(shown, f"{shown}: cannot read: {exc.strerror}")
        try:
            result = self._describe(root, folder, name, rel, fd, st, tracker, metadata)
        except BaseException:
            os.close(fd)
            raise
        if not isinstance(result, SourceDocument):
            os.close(fd)
        return result

    def _describe(
        self,
        root: Root,
        folder: _Dir,
        name: str,
        rel: str,
        fd: int,
        st: os.stat_result,
        tracker: StabilityTracker | None,
        metadata: DocumentMetadata,
    ) -> SourceDocument | SkippedDocument | None:
        """The document open as ``fd`` (with ``st`` its fstat), metadata from its sidecar."""
        fingerprint = _fingerprint(st, None, None)
        newest = st.st_mtime
        sidecar = self._find_sidecar(name, folder)
        if sidecar is not None:
            sidecar_rel = f"{folder.rel}/{sidecar.name}" if folder.rel else sidecar.name
            try:
                sc_fd, sc_st = self._open_member(
                    root, folder, sidecar.name, sidecar_rel, link=sidecar.is_symlink()
                )
            except _Refused as refused:
                reason = "not a regular file; not read" if refused.quiet else refused.reason
                return SkippedDocument(rel, f"sidecar {sidecar_rel}: {reason}")
            except OSError as exc:
                return SkippedDocument(rel, f"sidecar {sidecar_rel}: cannot read: {exc.strerror}")
            try:
                fingerprint = _fingerprint(st, sidecar.name, sc_st)
                newest = max(newest, sc_st.st_mtime)
                if self._unstable(tracker, rel, fingerprint, newest):
                    return None
                metadata = parse_sidecar_file(sc_fd, self.options.company)
            except SidecarError as exc:
                return SkippedDocument(rel, f"sidecar {sidecar_rel}: {exc}")
            finally:
                os.close(sc_fd)
        elif self._unstable(tracker, rel, fingerprint, newest):
            return None

        media_type, _ = mimetypes.guess_type(name, strict=False)
        return SourceDocument(
            external_id=rel,
            filename=name,
            # The content is read from this very handle: never re-opened by path.
            content=os.fdopen(fd, "rb"),
            media_type=media_type,
            metadata=metadata,
            fingerprint=fingerprint,
        )

    def _unstable(
        self, tracker: StabilityTracker | None, rel: str, fingerprint: str, newest: float
    ) -> bool:
        """True when ``rel`` may still be being written: leave it for a later fetch.

        Without ``stable_for`` nothing waits -- also not a file whose mtime
        lies in the future (copied from a machine with a skewed clock).
        """
        if tracker is None:
            return False
        wait = tracker.wait_for(rel, fingerprint, newest, self.context.now().timestamp())
        if wait is None:
            return False
        if self.context.logger is not None:
            self.context.logger.debug(
                "document.deferred",
                document=f"{self.id}/{rel}",
                reason=f"modified less than stable_for ({self.options.stable_for:g} s) ago",
                retry_in_s=round(wait, 3),
            )
        return True

    @staticmethod
    def _find_sidecar(name: str, folder: _Dir) -> os.DirEntry[str] | None:
        if not folder.by_name or name.endswith(".json"):
            # No .json file in the folder; or a JSON document, which has no
            # sidecar (see the module docs).
            return None
        for candidate in _sidecar_names(name):
            entry = folder.by_name.get(candidate)
            if entry is not None and not entry.is_dir():
                return entry
        return None


def _walk_order(entry: os.DirEntry[str]) -> str:
    """Sort key of a folder's entries: a folder is its name followed by ``/``."""
    try:
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError:
        is_dir = False
    return f"{entry.name}/" if is_dir else entry.name


_PLACEHOLDER = DocumentMetadata()
"""The metadata of an unchanged file's placeholder (never read: see ``_unchanged``)."""

_MAX_FINGERPRINT = 200
"""The catalog's column width: a longer fingerprint is stored as its hash."""


def _fingerprint(st: os.stat_result, sidecar: str | None, sc_st: os.stat_result | None) -> str:
    """The stat-cache key of a file (and its sidecar): see the module docs."""
    text = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
    if sidecar is not None and sc_st is not None:
        text += (
            f"+{sidecar}:{sc_st.st_size}:{sc_st.st_mtime_ns}:{sc_st.st_ctime_ns}"
            f":{sc_st.st_ino}:{sc_st.st_dev}"
        )
    if len(text) > _MAX_FINGERPRINT:
        # A long sidecar name: keep the key exact, and within the column.
        text = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return text


def _unexpected(rel: str, exc: Exception) -> SkippedDocument:
    """An unforeseen error on one entry, as that entry's failure."""
    shown = _printable(rel)
    message = str(exc)
    if len(message) > 300:
        message = message[:300] + "..."
    return SkippedDocument(shown, f"{shown}: unexpected error: {type(exc).__name__}: {message}")


def _through_link(root: Path, folders: tuple[str, ...]) -> bool:
    """True when one of ``folders`` (the path below ``root``) is a symbolic link (or gone)."""
    path = root
    for name in folders:
        path = path / name
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return True
        except OSError:
            return False  # gone again: the walk will see what is there
    return False


def _printable(rel: str) -> str:
    """``rel`` with undecodable bytes (kept as surrogates by os) made visible."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
