"""Builders for test data: documents, export items, contexts, a breaking stream.

Public (re-exported by :mod:`invoicesync.plugins.testing`) so that connector
authors write short tests without knowing every field of the models.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import mimetypes
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from ..connectors import ConnectorContext, ExportItem
from ..models import Document, DocumentMetadata, DocumentType, SourceDocument

__all__ = [
    "SAMPLE_PDF",
    "BreakingStream",
    "make_context",
    "make_document",
    "make_export_item",
    "make_source_document",
]

#: A tiny but valid PDF, the default content of test documents.
SAMPLE_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)

_counter = itertools.count(1)


def make_context(state_dir: Path, id: str = "test") -> ConnectorContext:
    """A :class:`ConnectorContext` for a connector under test; creates ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return ConnectorContext(id=id, state_dir=state_dir)


def make_document(content: bytes = SAMPLE_PDF, **overrides: Any) -> Document:
    """A valid catalog :class:`Document` describing ``content``.

    Every field has a plausible default (an ACME incoming invoice, 119.00 EUR);
    ``overrides`` replace any of them, e.g. ``make_document(number="R-1",
    tags={"travel"})``. ``size`` and ``sha256`` follow ``content`` unless
    overridden.
    """
    external_id = overrides.pop("external_id", f"doc-{next(_counter)}")
    source = overrides.pop("source", "test-source")
    fields: dict[str, Any] = {
        "id": f"{source}/{external_id}",
        "source": source,
        "external_id": external_id,
        "company": "acme",
        "type": DocumentType.INCOMING_INVOICE,
        "number": f"R-{external_id}",
        "document_date": date(2024, 3, 15),
        "due_date": date(2024, 4, 14),
        "net_amount": Decimal("100.00"),
        "gross_amount": Decimal("119.00"),
        "currency": "EUR",
        "tags": frozenset({"test"}),
        "import_date": datetime(2024, 3, 16, 9, 30, tzinfo=UTC),
        "filename": "invoice.pdf",
        "media_type": "application/pdf",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    fields.update(overrides)
    return Document.model_validate(fields)


@dataclass(frozen=True)
class _BreakingExportItem(ExportItem):
    """An export item whose stream fails after ``fail_after`` bytes."""

    fail_after: int = 0

    def open(self) -> IO[bytes]:
        return cast(IO[bytes], BreakingStream(self.content_path.read_bytes(), self.fail_after))


def make_export_item(
    directory: Path,
    content: bytes = SAMPLE_PDF,
    remote_name: str = "acme/2024/2024-03-15_incoming_invoice_R-1.pdf",
    *,
    previous_ref: str | None = None,
    fail_after: int | None = None,
    **document_overrides: Any,
) -> ExportItem:
    """An :class:`ExportItem` for ``content``, stored as a file in ``directory``.

    With ``fail_after`` the item's :meth:`~ExportItem.open` returns a
    :class:`BreakingStream` that raises :class:`OSError` once that many bytes
    were read -- the way a dying disk or an interrupted download looks to a
    target.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"content-{next(_counter)}.bin"
    path.write_bytes(content)
    leaf = PurePosixPath(remote_name.replace("\x00", "")).name or "document.pdf"
    document_overrides.setdefault("filename", leaf)
    document_overrides.setdefault(
        "media_type", mimetypes.guess_type(leaf)[0] or "application/octet-stream"
    )
    document = make_document(content, **document_overrides)
    if fail_after is None:
        return ExportItem(document, remote_name, path, previous_ref)
    return _BreakingExportItem(document, remote_name, path, previous_ref, fail_after)


def make_source_document(
    external_id: str = "doc-1",
    content: bytes = SAMPLE_PDF,
    **metadata: Any,
) -> SourceDocument:
    """A :class:`SourceDocument` as a source would yield it (for fake sources in tests)."""
    return SourceDocument(
        external_id=external_id,
        filename=f"{external_id}.pdf",
        content=content,
        media_type="application/pdf",
        metadata=DocumentMetadata.model_validate(metadata),
    )


class BreakingStream(io.RawIOBase):
    """A readable, seekable binary stream over ``data`` that fails half-way.

    Reads succeed until ``fail_after`` bytes were delivered; the next read
    raises ``OSError(EIO)``. Seeking back does not help: the failure models
    content that became unreadable, so every read past the limit fails.
    """

    def __init__(self, data: bytes, fail_after: int) -> None:
        super().__init__()
        self._data = data
        self._limit = max(0, min(fail_after, len(data)))
        self._fails = fail_after < len(data)
        self._pos = 0
        self.bytes_served = 0
        """How far into the data any read got (to see that the target did read)."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        if self._pos >= self._limit:
            if not self._fails:
                return 0
            raise OSError(errno.EIO, "simulated read failure (invoicesync conformance suite)")
        n = min(len(view), self._limit - self._pos)
        view[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        self.bytes_served = max(self.bytes_served, self._pos)
        return n
