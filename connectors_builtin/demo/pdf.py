"""A tiny writer for real, valid one-page PDF 1.4 files with plain text.

The demo portal needs documents that look like what real portals hand out
(PDF invoices that viewers open and ``pdftotext`` reads) without shipping a
PDF library. This writer supports exactly that: one A4 page, lines of text in
the standard Helvetica font (no embedding needed, every viewer has it), a few
horizontal rules, and a correct cross-reference table.

The output is a pure function of the input: no timestamps or random ids, so
the same document always has the same bytes (and the same SHA-256).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import date
from typing import NamedTuple

__all__ = ["PdfLine", "render_pdf"]

A4_WIDTH = 595
A4_HEIGHT = 842


class PdfLine(NamedTuple):
    """One line of text at a position (points from the bottom-left corner)."""

    x: int
    y: int
    text: str
    size: int = 10
    bold: bool = False


# One translation table escapes what must be escaped inside a PDF literal
# string and blanks control characters (they have no glyphs and would only
# confuse text extraction).
_ESCAPES: dict[int, str] = {code: " " for code in range(32)}
_ESCAPES.update({ord("\\"): "\\\\", ord("("): "\\(", ord(")"): "\\)"})


_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f()\\]")


def _literal(text: str) -> str:
    """Quote text as a PDF literal string, as a str of byte values (see _encode)."""
    # str.translate is slow; most lines need no escaping at all.
    if _NEEDS_ESCAPE.search(text):
        text = text.translate(_ESCAPES)
    if not text.isascii():
        # WinAnsiEncoding is (nearly) Windows-1252, which covers German
        # umlauts and the euro sign; anything else becomes "?" rather than
        # failing. The cp1252 codec is slow, so only non-ASCII lines take it;
        # decoding as Latin-1 maps each resulting byte to one code point.
        text = text.encode("cp1252", errors="replace").decode("latin-1")
    return "(" + text + ")"


def _encode(text: str) -> bytes:
    # Every code point is < 256 here (see _literal): Latin-1 is a 1:1 mapping.
    return text.encode("latin-1")


def _content_stream(lines: Sequence[PdfLine], rules: Sequence[int]) -> bytes:
    ops: list[str] = []
    if rules:
        ops.append("0.6 w 0.5 G")
        ops.extend(f"50 {y} m 545 {y} l S" for y in rules)
    ops.append("0 g")
    ops.extend(
        f"BT /F{2 if bold else 1} {size} Tf {x} {y} Td {_literal(text)} Tj ET"
        for x, y, text, size, bold in lines
    )
    ops.append("")
    return _encode("\n".join(ops))


def _text_string(text: str) -> bytes:
    """A PDF text string for the information dictionary.

    Outside content streams PDF uses PDFDocEncoding, not WinAnsiEncoding, so
    non-ASCII text is written as UTF-16BE with a byte order mark instead.
    """
    if text.isascii():
        return _encode(_literal(text))
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def _pdf_date(day: date) -> bytes:
    return f"(D:{day:%Y%m%d}000000Z)".encode()


def render_pdf(
    lines: Sequence[PdfLine],
    *,
    title: str,
    day: date,
    rules: Sequence[int] = (),
) -> bytes:
    """Render one A4 page with the given text lines and horizontal rules.

    ``title`` goes into the document information dictionary, ``day`` is its
    creation date (a fixed day, for reproducible output). Returns the bytes of
    a complete PDF 1.4 file.
    """
    stream = _content_stream(lines, rules)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d]" % (A4_WIDTH, A4_HEIGHT)
        + b" /Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"endstream",
        b"<< /Title "
        + _text_string(title)
        + b" /Producer (invoicesync demo portal) /CreationDate "
        + _pdf_date(day)
        + b" >>",
    ]
    # The binary comment on line two tells transfer tools the file is binary.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += str(number).encode() + b" 0 obj\n" + body + b"\nendobj\n"
    xref_at = len(out)
    count = len(objects) + 1
    out += b"xref\n0 " + str(count).encode() + b"\n0000000000 65535 f \n"
    for offset in offsets:
        # Each entry is exactly 20 bytes: 10-digit offset, generation, "n", EOL.
        out += b"%010d 00000 n \n" % offset
    # The file identifier is derived from the content, so it is reproducible.
    file_id = hashlib.md5(bytes(out), usedforsecurity=False).hexdigest().encode()
    out += (
        b"trailer\n<< /Size "
        + str(count).encode()
        + b" /Root 1 0 R /Info 7 0 R /ID [<"
        + file_id
        + b"> <"
        + file_id
        + b">] >>\nstartxref\n"
        + str(xref_at).encode()
        + b"\n%%EOF\n"
    )
    return bytes(out)
