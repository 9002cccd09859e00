"""The e-invoice extractor: finds the XML (standalone or embedded in a PDF) and reads it."""

from __future__ import annotations

from typing import Any, ClassVar

from invoicesync.plugins import (
    EINVOICE_PRIORITY,
    Extraction,
    ExtractionInput,
    Extractor,
)

_XML_MEDIA = ("application/xml", "text/xml")


def _looks_like_xml(head: bytes) -> bool:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return stripped.startswith(b"<") or head.startswith((b"\xff\xfe", b"\xfe\xff"))


class EInvoiceExtractor(Extractor):
    """EN 16931 e-invoices: Factur-X / ZUGFeRD PDFs, XRechnung, UBL, Peppol BIS."""

    name: ClassVar[str] = "einvoice"
    label: ClassVar[str] = "e-invoice"
    priority: ClassVar[int] = EINVOICE_PRIORITY
    description: ClassVar[str] = (
        "Factur-X / ZUGFeRD (embedded XML in PDF), XRechnung CII/UBL, UBL 2.1, Peppol BIS 3.0"
    )

    def detect(self, document: ExtractionInput) -> bool:
        # Cheap: a PDF counts only if it holds an embedded file at all (the
        # stream dictionary of an embedded file is never compressed), an XML
        # by its name, media type or first bytes.
        head = document.head(1024)
        if head.startswith(b"%PDF") or b"%PDF-" in head:
            return _has_embedded_file(document)
        name = document.filename.lower()
        return (
            name.endswith(".xml")
            or (document.media_type or "").split(";")[0].strip() in _XML_MEDIA
            or _looks_like_xml(head)
        )

    def extract(self, document: ExtractionInput) -> Extraction | None:
        # lxml, pypdf and the schemas load on the first e-invoice, not when
        # plugins load: commands and plain-PDF imports never pay for them.
        from .reading import read_document

        return read_document(document)


def _has_embedded_file(document: ExtractionInput) -> bool:
    if isinstance(document.content, bytes):
        return b"/EmbeddedFile" in document.content
    with document.open() as stream:
        return _stream_contains(stream, b"/EmbeddedFile")


def _stream_contains(stream: Any, needle: bytes, chunk: int = 1 << 20) -> bool:
    tail = b""
    while True:
        block = stream.read(chunk)
        if not block:
            return False
        if needle in tail + block[: len(needle)] or needle in block:
            return True
        tail = block[-len(needle) :]
