"""Connectors with one deliberate bug each: the conformance suite must catch it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from invoicesync.plugins import (
    DocumentMetadata,
    ExportItem,
    ExportResult,
    FetchResult,
    PermanentError,
    SourceDocument,
    TransientError,
)
from reference_connectors import MemorySource, ReferenceFolderTarget


class NonAtomicTarget(ReferenceFolderTarget):
    """Writes straight into the destination: a failure leaves half a file."""

    def export(self, item: ExportItem) -> ExportResult:
        self.check()
        dest = self._destination(item.remote_name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out, item.open() as src:
            try:
                shutil.copyfileobj(src, out)
            except OSError as exc:
                raise TransientError(str(exc)) from exc
        return ExportResult(item.remote_name)


class NaiveJoinTarget(ReferenceFolderTarget):
    """Joins the remote name below the root without looking at it."""

    def _destination(self, name: str) -> Path:
        return self.options.path / name


class DuplicatingTarget(ReferenceFolderTarget):
    """Never replaces: a second export of a name becomes ``name (1)``."""

    def export(self, item: ExportItem) -> ExportResult:
        dest = self._destination(item.remote_name)
        n = 0
        name = item.remote_name
        while dest.exists():
            n += 1
            name = f"{item.remote_name} ({n})"
            dest = self._destination(name)
        return super().export(ExportItem(item.document, name, item.content_path))


class LeakyTarget(ReferenceFolderTarget):
    """Puts its configuration (here standing in for a password) into the error."""

    def check(self) -> None:
        if not self.options.path.is_dir():
            raise TransientError(f"cannot log in with {self.options.path}")


class LeakyCauseTarget(ReferenceFolderTarget):
    """A clean message, but the chained low-level exception carries the secret."""

    def check(self) -> None:
        try:
            raise OSError(f"auth failed for {self.options.path}")
        except OSError as exc:
            raise TransientError("login failed") from exc


class RawErrorTarget(ReferenceFolderTarget):
    """Lets the operating system's error escape unclassified."""

    def export(self, item: ExportItem) -> ExportResult:
        if not self.options.path.is_dir():
            raise FileNotFoundError(str(self.options.path))
        return super().export(item)


class CursorIgnoringSource(MemorySource):
    """Hands out checkpoints but starts from the beginning whatever the cursor."""

    def fetch(self, cursor: str | None) -> FetchResult:
        return (yield from super().fetch(None))


class LosingSource(MemorySource):
    """Its checkpoints point one document too far: a resume loses one."""

    def fetch(self, cursor: str | None) -> FetchResult:
        self.check()
        start = int(cursor or 0)
        for i in range(start, len(self.docs)):
            d = self.docs[i]
            yield SourceDocument(d.external_id, d.filename, d.content, cursor=str(i + 2))
        return str(len(self.docs))


class BadItemsSource(MemorySource):
    """Yields a document with a path as its filename and one with no content."""

    def fetch(self, cursor: str | None) -> FetchResult:
        yield from super().fetch(cursor)
        yield SourceDocument("bad-1", "sub/dir.pdf", b"%PDF")
        yield SourceDocument("bad-2", "empty.pdf", b"")
        return None


class ListSource(MemorySource):
    """fetch() returns a list: no generator, so no cursor can come back."""

    def fetch(self, cursor: str | None) -> Any:
        return list(super().fetch(cursor))


class LitteringTarget(ReferenceFolderTarget):
    """Refuses a NUL byte correctly, but leaves its temporary file behind."""

    def export(self, item: ExportItem) -> ExportResult:
        if "\x00" in item.remote_name:
            (self.options.path / ".partial-upload").write_bytes(b"%PDF")
            raise PermanentError("NUL bytes are not allowed in names")
        return super().export(item)


class UnvalidatedMetadataSource(MemorySource):
    """Builds metadata with model_construct(), skipping validation."""

    def fetch(self, cursor: str | None) -> FetchResult:
        yield from super().fetch(cursor)
        bad = DocumentMetadata.model_construct(currency="euro")
        yield SourceDocument("bad-meta", "bad.pdf", b"%PDF", metadata=bad)
        return None
