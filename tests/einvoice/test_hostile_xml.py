"""Hostile and broken XML: a clear ExtractionError, nothing read from disk or network."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoicesync.connectors_builtin.einvoice import EInvoiceExtractor
from invoicesync.plugins import ExtractionError, ExtractionInput

DATA = Path(__file__).resolve().parents[1] / "data" / "einvoices"
UBL = (DATA / "django-xrechnung_ubl.xml").read_bytes()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY", encoding="utf-8")
    return secret


@pytest.fixture
def web_hits() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server recording every request (none may arrive)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<x>NETWORK-CANARY</x>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def run(data: bytes, name: str = "invoice.xml") -> object:
    document = ExtractionInput(name, "application/xml", data)
    extractor = EInvoiceExtractor()
    assert extractor.detect(document)
    return extractor.extract(document)


def with_doctype(doctype: str, body: str) -> bytes:
    text = UBL.decode("utf-8")
    head, _, rest = text.partition("<Invoice")
    return (head + doctype + "<Invoice" + rest.replace("INV-0001", body, 1)).encode("utf-8")


def test_external_entity_to_a_local_file_is_refused(canary: Path) -> None:
    data = with_doctype(f'<!DOCTYPE Invoice [<!ENTITY x SYSTEM "file://{canary}">]>', "&x;")
    with pytest.raises(ExtractionError, match="DTD or entities") as info:
        run(data)
    assert "TOP-SECRET" not in str(info.value)


def test_external_entity_and_dtd_over_the_network_are_never_fetched(
    web_hits: tuple[str, list[str]],
) -> None:
    url, hits = web_hits
    for doctype in (
        f'<!DOCTYPE Invoice SYSTEM "{url}/evil.dtd">',
        f'<!DOCTYPE Invoice [<!ENTITY x SYSTEM "{url}/entity">]>',
    ):
        with pytest.raises(ExtractionError, match="DTD"):
            run(with_doctype(doctype, "&x;"))
    # XInclude and schemaLocation are not processed either.
    xinclude = UBL.replace(
        b"<cbc:ID>INV-0001</cbc:ID>",
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{url}/inc"/>'.encode(),
        1,
    )
    result = run(xinclude)
    assert result is not None
    assert hits == []


def test_billion_laughs_is_refused_fast() -> None:
    entities = '<!ENTITY a0 "ha">' + "".join(
        f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    with pytest.raises(ExtractionError, match="DTD or entities"):
        run(with_doctype(f"<!DOCTYPE Invoice [{entities}]>", "&a9;"))


def test_utf16_doctype_is_refused(canary: Path) -> None:
    data = with_doctype(f'<!DOCTYPE Invoice [<!ENTITY x SYSTEM "file://{canary}">]>', "&x;")
    text = data.decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    with pytest.raises(ExtractionError):
        run(text.encode("utf-16"))


def test_fifty_megabytes_are_not_parsed() -> None:
    data = b"<?xml version='1.0'?><Invoice>" + b" " * (50 * 1024 * 1024) + b"</Invoice>"
    with pytest.raises(ExtractionError, match=r"50\.0 MB of XML is more than the 20 MB limit"):
        run(data)


def test_deep_nesting_is_refused() -> None:
    data = b"<a>" * 5000 + b"</a>" * 5000
    with pytest.raises(ExtractionError, match="deeper than 100 levels"):
        run(data)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"<Invoice><cbc:ID>1</Invoice>", "not well-formed XML"),
        (b"", "not well-formed XML|empty XML"),
        (b"<?xml version='1.0'?>", "not well-formed XML|empty XML"),
        (UBL.replace(b"Invoice-2", b"Invoice-3"), "not an e-invoice"),
        (b"<html><body>hello</body></html>", r"not an e-invoice \(root element html"),
    ],
    ids=["malformed", "empty", "declaration only", "wrong namespace", "other xml"],
)
def test_broken_or_foreign_xml_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ExtractionError, match=message) as info:
        run(data, "bad.xml")
    assert str(info.value).startswith("bad.xml: ")


def test_a_pdf_whose_attachment_is_not_xml(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(72, 72)
    writer.add_attachment("factur-x.xml", b"%PDF-1.4 this is not xml at all")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(ExtractionError, match=r"x\.pdf: embedded factur-x\.xml: not well-formed"):
        run(buffer.getvalue(), "x.pdf")


def test_a_pdf_with_a_foreign_attachment_name_is_left_alone() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(72, 72)
    writer.add_attachment("notes.txt", b"hello")
    buffer = io.BytesIO()
    writer.write(buffer)
    document = ExtractionInput("x.pdf", "application/pdf", buffer.getvalue())
    extractor = EInvoiceExtractor()
    assert extractor.detect(document)  # it has an embedded file...
    assert extractor.extract(document) is None  # ...but no e-invoice
