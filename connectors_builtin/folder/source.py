"""The ``folder`` source: every file in a directory tree is a document.

Rules (also in docs/connectors/builtin.md):

- The external id is the file's POSIX path relative to ``path``; the walk is
  depth-first in sorted name order, so fetches are deterministic.
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
- A symbolic link to a file is followed only when it resolves inside
  ``path``; a link that points outside, or nowhere, yields a skipped document
  saying so. Links to folders inside ``path`` are not entered (the folder is
  imported in its own place, and link loops cannot arise); links to folders
  outside are reported as skipped.
- ``fingerprint`` is size and modification time (ns) of the file and of its
  sidecar: the catalog skips unchanged files without reading them.
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

import mimetypes
import os
import re
import stat
from collections.abc import Iterator
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

from .sidecar import SidecarError, parse_sidecar
from .stability import StabilityTracker

__all__ = ["FolderSource", "FolderSourceOptions", "is_ignored_name"]

_TEMP_SUFFIXES = ("~", ".part", ".tmp", ".crdownload")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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
    """A folder being walked: its sorted entries and where we are in them."""

    rel: str  # POSIX path relative to the root, "" for the root itself
    entries: list[os.DirEntry[str]]
    by_name: dict[str, os.DirEntry[str]]
    claimed: set[str]  # .json names that are sidecars of some file here
    position: int = 0


def _sidecar_names(name: str) -> tuple[str, str]:
    """The two sidecar names a document may have, preferred one first."""
    stem, dot, _ = name.rpartition(".")
    return f"{name}.json", f"{stem if dot and stem else name}.json"


class FolderSource(Source[FolderSourceOptions]):
    """Import every file below a folder; optional JSON sidecars carry metadata."""

    type_name = "folder"
    Options = FolderSourceOptions
    description = "Files in a local folder, with optional JSON sidecars"

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
            return not any(is_ignored_name(part) for part in parts)

        return WatchSpec(paths=(root,), recursive=recursive, relevant=relevant)

    def fetch(self, cursor: str | None) -> FetchResult:
        """Walk the folder and yield every document (see the module docs)."""
        self.refetch_after = None
        try:
            root = self._root()
        except ConnectorError as exc:
            # At fetch time a missing folder is usually an unmounted share:
            # worth retrying, unlike a typo found by check-config.
            raise TransientError(str(exc)) from None
        tracker = (
            StabilityTracker(self.options.stable_for, self.context.state_dir)
            if self.options.stable_for > 0
            else None
        )
        yield from self._walk(root, tracker)
        if tracker is not None:
            tracker.save()
            self.refetch_after = tracker.soonest
        return None

    # -- the walk -------------------------------------------------------------

    def _open_dir(self, path: str, rel: str) -> _Dir:
        with os.scandir(path) as it:
            entries = sorted((e for e in it if not is_ignored_name(e.name)), key=lambda e: e.name)
        by_name = {e.name: e for e in entries}
        claimed: set[str] = set()
        for e in entries:
            # Only files claim sidecars: a folder "2025" does not make
            # "2025.json" a sidecar. (is_dir uses the d_type readdir gave.)
            if not e.name.endswith(".json") and not e.is_dir():
                claimed.update(_sidecar_names(e.name))
        return _Dir(rel, entries, by_name, claimed)

    def _walk(
        self, root: Path, tracker: StabilityTracker | None
    ) -> Iterator[SourceDocument | SkippedDocument]:
        root_str = str(root)
        root_prefix = root_str.rstrip(os.sep) + os.sep
        stack = [self._open_dir(root_str, "")]
        default_metadata = DocumentMetadata(company=self.options.company)
        while stack:
            current = stack[-1]
            if current.position >= len(current.entries):
                stack.pop()
                continue
            entry = current.entries[current.position]
            current.position += 1
            rel = f"{current.rel}/{entry.name}" if current.rel else entry.name
            try:
                is_link = entry.is_symlink()
                if is_link:
                    target = os.path.realpath(entry.path)
                    if target != root_str and not target.startswith(root_prefix):
                        yield SkippedDocument(
                            _printable(rel),
                            f"{rel}: symbolic link points outside the folder {root_str}; "
                            "not followed",
                        )
                        continue
                    try:
                        st = os.stat(target)
                    except FileNotFoundError:
                        yield SkippedDocument(_printable(rel), f"{rel}: broken symbolic link")
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        # Its target is inside the root, so the walk imports
                        # that folder in its own place; following the link
                        # too would import everything twice (or loop).
                        continue
                    is_dir = False
                    is_file = stat.S_ISREG(st.st_mode)
                else:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_file = not is_dir and entry.is_file(follow_symlinks=False)
            except OSError as exc:
                yield SkippedDocument(_printable(rel), f"{rel}: cannot read: {exc.strerror}")
                continue

            if is_dir:
                if not self.options.recursive:
                    continue
                try:
                    stack.append(self._open_dir(entry.path, rel))
                except OSError as exc:
                    yield SkippedDocument(
                        _printable(rel), f"{rel}: cannot list folder: {exc.strerror}"
                    )
                continue
            if not is_file:
                continue  # FIFOs, sockets, devices: never documents
            if entry.name.endswith(".json") and entry.name in current.claimed:
                continue  # a sidecar, read with its document
            result = self._document(entry, rel, current, root_prefix, tracker, default_metadata)
            if result is not None:
                yield result

    def _document(
        self,
        entry: os.DirEntry[str],
        rel: str,
        folder: _Dir,
        root_prefix: str,
        tracker: StabilityTracker | None,
        metadata: DocumentMetadata,
    ) -> SourceDocument | SkippedDocument | None:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            return SkippedDocument(
                _printable(rel), f"{_printable(rel)}: file name is not valid UTF-8; rename it"
            )
        try:
            st = entry.stat()  # follows a link (already known to stay inside)
        except OSError as exc:
            return SkippedDocument(rel, f"{rel}: cannot read: {exc.strerror}")
        fingerprint = f"{st.st_size}:{st.st_mtime_ns}"
        newest = st.st_mtime
        sidecar = self._find_sidecar(entry.name, folder)
        if sidecar is not None:
            sidecar_rel = f"{folder.rel}/{sidecar.name}" if folder.rel else sidecar.name
            try:
                if sidecar.is_symlink():
                    target = os.path.realpath(sidecar.path)
                    if not target.startswith(root_prefix):
                        return SkippedDocument(
                            rel,
                            f"sidecar {sidecar_rel}: symbolic link points outside the "
                            "folder; not followed",
                        )
                sc_st = sidecar.stat()
                fingerprint += f"+{sidecar.name}:{sc_st.st_size}:{sc_st.st_mtime_ns}"
                newest = max(newest, sc_st.st_mtime)
                if self._unstable(tracker, rel, fingerprint, newest):
                    return None
                metadata = parse_sidecar(Path(sidecar.path), self.options.company)
            except SidecarError as exc:
                return SkippedDocument(rel, f"sidecar {sidecar_rel}: {exc}")
            except OSError as exc:
                return SkippedDocument(rel, f"sidecar {sidecar_rel}: cannot read: {exc.strerror}")
        elif self._unstable(tracker, rel, fingerprint, newest):
            return None

        media_type, _ = mimetypes.guess_type(entry.name, strict=False)
        return SourceDocument(
            external_id=rel,
            filename=entry.name,
            content=Path(entry.path),
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
        if name.endswith(".json"):
            return None  # JSON documents have no sidecars (see the module docs)
        for candidate in _sidecar_names(name):
            entry = folder.by_name.get(candidate)
            if entry is not None and not entry.is_dir():
                return entry
        return None


def _printable(rel: str) -> str:
    """``rel`` with undecodable bytes (kept as surrogates by os) made visible."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
