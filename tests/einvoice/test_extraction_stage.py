"""The import's extraction stage: precedence, isolation, company direction."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ClassVar

from invoicesync.connectors_builtin.einvoice import EInvoiceExtractor
from invoicesync.connectors_builtin.einvoice.validation import _schema
from invoicesync.daemon.config.models import CompanyConfig, CompanyRule, SourceConfig
from invoicesync.daemon.engine.extraction import ExtractionStage
from invoicesync.daemon.engine.provenance import stated_metadata
from invoicesync.plugins import (
    Document,
    DocumentMetadata,
    DocumentType,
    Extraction,
    ExtractionInput,
    Extractor,
    SourceDocument,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "einvoices"
RELEASE = threading.Event()


class Raising(Extractor):
    name: ClassVar[str] = "raising"
    priority: ClassVar[int] = 90

    def extract(self, document: ExtractionInput) -> Extraction | None:
        raise RuntimeError("boom in the plugin")


class Stuck(Extractor):
    name: ClassVar[str] = "stuck"
    priority: ClassVar[int] = 80

    def extract(self, document: ExtractionInput) -> Extraction | None:
        RELEASE.wait(60)  # released by the test once the stage moved on
        return Extraction(metadata=DocumentMetadata(number="LATE"))


class LateReader(Extractor):
    """Opens the content, is stuck until released, then reads: what an abandoned extractor sees."""

    name: ClassVar[str] = "late"
    priority: ClassVar[int] = 70
    seen: ClassVar[list[bytes]] = []
    finished: ClassVar[threading.Event] = threading.Event()

    def extract(self, document: ExtractionInput) -> Extraction | None:
        try:
            with document.open() as stream:
                RELEASE.wait(60)
                LateReader.seen.append(stream.read())
        finally:
            LateReader.finished.set()
        return None


class Heuristic(Extractor):
    name: ClassVar[str] = "guess"
    priority: ClassVar[int] = 10

    def extract(self, document: ExtractionInput) -> Extraction | None:
        return Extraction(
            metadata=DocumentMetadata(number="GUESS", note="from a heuristic"),
            provenance={"number": "guess, text", "note": "guess, text"},
        )


EXTRACTORS = {
    "einvoice": EInvoiceExtractor,
    "raising": Raising,
    "stuck": Stuck,
    "late": LateReader,
    "guess": Heuristic,
}


def stage(source: SourceConfig, companies: list[CompanyConfig] | None = None) -> ExtractionStage:
    return ExtractionStage(EXTRACTORS, [source], companies or [])


def item(name: str, **metadata: object) -> SourceDocument:
    return SourceDocument(
        external_id=name,
        filename=name,
        content=DATA / name,
        metadata=DocumentMetadata(**metadata),  # type: ignore[arg-type]
    )


def run(st: ExtractionStage, source: SourceConfig, doc: SourceDocument):  # type: ignore[no-untyped-def]
    findings = st.findings(source, doc, doc.metadata)
    merged, derived = st.apply(source, doc, findings)
    return findings, merged, derived


def test_the_source_wins_then_e_invoice_then_heuristics() -> None:
    source = SourceConfig(id="inbox", type="folder", extract=["guess", "einvoice"])
    doc = item("facturx-pkg_factur-x-en16931.xml", document_date=date(2020, 1, 1))
    _, merged, derived = run(stage(source), source, doc)
    meta = merged.metadata
    assert meta.document_date == date(2020, 1, 1)  # stated by the source (sidecar)
    assert "document_date" not in derived.provenance
    assert meta.number == "F20260023"  # e-invoice beats the heuristic
    assert derived.provenance["number"] == "Factur-X XML, BT-1"
    assert meta.note == "from a heuristic"  # only the heuristic knows it
    assert derived.provenance["note"] == "guess, text"
    assert derived.einvoice_valid is True


def test_a_raising_or_stuck_extractor_is_named_and_the_rest_still_applies() -> None:
    RELEASE.clear()
    source = SourceConfig(
        id="inbox",
        type="folder",
        extract=["raising", "stuck", "einvoice"],
        # Long enough for the e-invoice extractor on a loaded machine (its
        # schema compiled beforehand), short enough to keep the test quick.
        extract_timeout=timedelta(seconds=2),
    )
    _schema("ubl-2.1-invoice")
    doc = item("django-xrechnung_ubl.xml", tags=["mail"])
    try:
        findings, merged, _ = run(stage(source), source, doc)
    finally:
        RELEASE.set()
    errors = {f.extractor: f.error for f in findings if f.error}
    assert errors["raising"] == "RuntimeError: boom in the plugin"
    assert set(errors) == {"raising", "stuck"}
    assert "took longer than 2 s" in (errors["stuck"] or "")
    assert merged.metadata.number == "INV-0001"  # the e-invoice extractor still ran
    assert merged.metadata.tags == frozenset({"mail"})


def test_an_abandoned_extractor_never_reads_another_file_through_a_reused_descriptor(
    tmp_path: Path,
) -> None:
    # The folder source hands over an open file and closes it after the
    # import; an extractor abandoned at its timeout may read on later, when
    # the descriptor number already belongs to another file.
    RELEASE.clear()
    LateReader.seen.clear()
    LateReader.finished.clear()
    (tmp_path / "invoice.pdf").write_bytes(b"%PDF-1.4 the document\n")
    (tmp_path / "secret").write_bytes(b"another file's content")
    source = SourceConfig(
        id="inbox", type="folder", extract=["late"], extract_timeout=timedelta(seconds=0.2)
    )
    handle = (tmp_path / "invoice.pdf").open("rb")
    doc = SourceDocument(external_id="invoice.pdf", filename="invoice.pdf", content=handle)
    try:
        findings, _, _ = run(stage(source), source, doc)
        assert "took longer" in (findings[0].error or "")
        number = handle.fileno()
        handle.close()
        reused = os.open(tmp_path / "secret", os.O_RDONLY)
        try:
            assert reused == number, "the test needs the freed descriptor number reused"
            RELEASE.set()
            assert LateReader.finished.wait(30)
        finally:
            os.close(reused)
    finally:
        RELEASE.set()
        handle.close()
    assert LateReader.seen == [b"%PDF-1.4 the document\n"]


def test_company_profiles_decide_incoming_or_sales() -> None:
    source = SourceConfig(id="inbox", type="folder")
    # erechnung-core sample: seller DE123456789, buyer DE987654321.
    buyer = [CompanyConfig(id="kunde", vat_ids=["DE 987 654 321"])]
    # company=None as the folder source passes it without a `company` option,
    # type=misc as the imap source passes it by default: they state nothing,
    # so the e-invoice fills them.
    doc = item("erechnung-core_de-standard-19.xml", company=None, type="misc")
    _, merged, derived = run(stage(source, buyer), source, doc)
    assert merged.metadata.company == "kunde"
    assert merged.metadata.type is DocumentType.INCOMING_INVOICE
    assert derived.provenance["company"].startswith("company profile kunde: buyer VAT id")
    seller = [CompanyConfig(id="wir", vat_ids=["DE123456789"])]
    _, merged, derived = run(
        stage(source, seller), source, item("erechnung-core_de-standard-19.xml")
    )
    assert merged.metadata.company == "wir"
    assert merged.metadata.type is DocumentType.SALES_INVOICE
    assert "seller VAT id DE123456789" in derived.provenance["type"]


def test_assign_company_rules_match_extracted_fields_and_win() -> None:
    rule = CompanyRule(company="telco", field={"seller_vat_id": "DE123456789"})
    source = SourceConfig(id="inbox", type="folder", assign_company=[rule])
    companies = [CompanyConfig(id="kunde", vat_ids=["DE987654321"])]
    _, merged, derived = run(
        stage(source, companies), source, item("erechnung-core_de-standard-19.xml")
    )
    assert merged.metadata.company == "telco"
    assert derived.provenance["company"] == "assign_company rule"


def test_extraction_off() -> None:
    source = SourceConfig(id="inbox", type="folder", extract=[])
    findings, merged, derived = run(stage(source), source, item("django-xrechnung_ubl.xml"))
    assert findings == [] and merged.metadata.number is None and not derived.provenance


def test_a_guessed_field_gives_way_to_the_e_invoice_and_stays_a_guess() -> None:
    # The imap source's mail date stands in for the document date.
    source = SourceConfig(id="mail", type="imap")
    doc = replace(
        item("django-xrechnung_ubl.xml", document_date=date(2026, 9, 30)),
        guessed=frozenset({"document_date"}),
    )
    _, merged, derived = run(stage(source), source, doc)
    assert merged.metadata.document_date == date(2026, 9, 9)  # BT-2, not the mail date
    assert derived.provenance["document_date"] == "XRechnung UBL, BT-2"
    plain = replace(
        item("django-xrechnung_no-xml.pdf", document_date=date(2026, 9, 30)),
        guessed=frozenset({"document_date"}),
    )
    _, merged, derived = run(stage(source), source, plain)
    assert merged.metadata.document_date == date(2026, 9, 30)  # nothing better found
    assert derived.provenance["document_date"] == "guessed by the source"
    stored = Document.model_validate(
        {
            **merged.metadata.model_dump(),
            "id": "mail/x",
            "source": "mail",
            "external_id": "x",
            "import_date": datetime(2026, 10, 1, tzinfo=UTC),
            "filename": "x.pdf",
            "media_type": "application/pdf",
            "size": 1,
            "sha256": "ab" * 32,
            "provenance": derived.provenance,
        }
    )
    stated, guessed = stated_metadata(stored)  # what reextract starts from
    assert stated.document_date == date(2026, 9, 30) and guessed == {"document_date"}
