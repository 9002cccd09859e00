"""Extractors: plugins that read document fields from the content itself.

An extractor runs at import, after a source yielded a document and before the
catalog commits it. It sees the content (bytes or a local file), the media
type, the original file name and the fields the source already stated, and
returns the fields it found together with where each came from::

    class QrBillExtractor(Extractor):
        name = "qr-bill"                 # what users list under a source's `extract:`
        label = "Swiss QR bill"          # shown in provenance: "(Swiss QR bill, amount)"
        priority = 10                    # heuristics < 50 (e-invoice data) < the source

        def detect(self, document):      # cheap: runs for every imported document
            return document.media_type == "application/pdf"

        def extract(self, document):
            ...
            return Extraction(
                metadata=DocumentMetadata(gross_amount=Decimal("12.50")),
                provenance={"gross_amount": "Swiss QR bill, amount"},
            )

Precedence: what the source states explicitly (a sidecar, a portal's API, an
``assign_company`` rule) always wins; among extractors the higher ``priority``
wins (the built-in e-invoice extractor has :data:`EINVOICE_PRIORITY`).
An extractor that raises, or takes longer than the source's
``extract_timeout``, is named in a ``document.extract_failed`` warning and
the document is imported with the fields it had. Raise
:class:`ExtractionError` with a clear message for content you cannot read.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

from .errors import InvoicesyncError
from .models import DocumentMetadata

__all__ = [
    "EINVOICE_PRIORITY",
    "Extraction",
    "ExtractionError",
    "ExtractionInput",
    "Extractor",
]

#: The priority of the built-in e-invoice extractor: heuristics stay below it.
EINVOICE_PRIORITY = 50

_HEAD = 8192


class ExtractionError(InvoicesyncError):
    """The content cannot be read by this extractor (broken or hostile XML...).

    The message becomes the warning's reason: say what is wrong and where
    (``"embedded factur-x.xml: not well-formed XML (line 3)"``).
    """


@dataclass(frozen=True)
class ExtractionInput:
    """One document's content as an extractor sees it (read-only)."""

    filename: str
    """The original file name (a bare name, as the source gave it)."""
    media_type: str | None
    """The media type the source gave, or one guessed from the file name."""
    content: bytes | Path | BinaryIO
    """The bytes, the path of a local file holding them, or a file object open
    on them (one with a ``fileno()``). Read it through :meth:`open`,
    :meth:`head` and :attr:`size`: they never move the file object's position
    (the engine reads it afterwards)."""
    stated: DocumentMetadata = field(default_factory=DocumentMetadata)
    """The fields the source stated; ``stated.model_fields_set`` are the explicit ones."""

    def open(self) -> BinaryIO:
        """A fresh binary stream over the content, from its start (close it when done)."""
        content = self.content
        if isinstance(content, bytes):
            return io.BytesIO(content)
        if isinstance(content, Path):
            return content.open("rb")
        # Positional reads on the same descriptor: an own position, so the
        # engine's later read of the file object is unaffected, and no second
        # lookup by path.
        return io.BufferedReader(_PositionalReader(content.fileno()))

    @property
    def size(self) -> int:
        content = self.content
        if isinstance(content, bytes):
            return len(content)
        if isinstance(content, Path):
            return content.stat().st_size
        return os.fstat(content.fileno()).st_size

    def head(self, limit: int = _HEAD) -> bytes:
        """The first ``limit`` bytes (at most 8 KiB): for cheap detection."""
        limit = min(limit, _HEAD)
        if isinstance(self.content, bytes):
            return self.content[:limit]
        with self.open() as stream:
            return stream.read(limit)


class _PositionalReader(io.RawIOBase):
    """Reads a descriptor with ``os.pread`` from its own offset (never closes it)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if _preadv is not None:
            # Straight into the caller's buffer: os.pread would allocate a
            # bytes object of the requested size (1 MiB for a detector's
            # chunk) to return a 15 KB invoice; 150 -> 60 us per document.
            count = _preadv(self._fd, [buffer], self._offset)
        else:
            data = os.pread(self._fd, len(buffer), self._offset)
            count = len(data)
            buffer[:count] = data
        self._offset += count
        return count


#: os.preadv where the platform has it (Linux, the BSDs; not macOS < 11).
_preadv: Callable[..., int] | None = getattr(os, "preadv", None)


@dataclass(frozen=True)
class Extraction:
    """What an extractor found.

    ``metadata`` holds the found fields: only those set explicitly
    (``model_fields_set``) count, so defaults such as ``type=misc`` never
    override anything. ``provenance`` maps each found field name (custom
    fields as ``fields.<name>``) to a short text saying where it came from,
    e.g. ``"Factur-X XML, BT-2"``. ``einvoice_valid`` and ``einvoice_errors``
    record a schema validation when the extractor made one.
    """

    metadata: DocumentMetadata = field(default_factory=DocumentMetadata)
    provenance: dict[str, str] = field(default_factory=dict)
    einvoice_valid: bool | None = None
    einvoice_errors: tuple[str, ...] = ()


class Extractor(ABC):
    """Reads fields from a document's content. One instance serves a whole run.

    Subclasses set ``name`` (unique; users list it under a source's
    ``extract:``), ``label`` and ``priority``, and implement :meth:`detect`
    and :meth:`extract`. Instances may be used from several threads at once:
    keep no per-document state on ``self``.
    """

    name: ClassVar[str]
    label: ClassVar[str] = ""
    priority: ClassVar[int] = 10
    description: ClassVar[str] = ""

    def detect(self, document: ExtractionInput) -> bool:
        """Whether :meth:`extract` may find something: must be cheap (it runs
        for every imported document), e.g. a look at the media type and
        ``document.head()``. The default says yes."""
        return True

    @abstractmethod
    def extract(self, document: ExtractionInput) -> Extraction | None:
        """The fields found, or None when there is nothing to read."""
