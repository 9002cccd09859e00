"""Reading an e-invoice: the XML (standalone or attached to a PDF), parsed safely."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

from invoicesync.plugins import (
    DocumentMetadata,
    DocumentType,
    Extraction,
    ExtractionError,
    ExtractionInput,
    PaymentStatus,
)
from lxml import etree

from . import safexml
from .cii import CII_NS, ZUGFERD1_NS, read_cii
from .fields import CREDIT_NOTE_CODES, INVOICE_CODES, Read
from .ubl import CREDIT_NOTE_NS, INVOICE_NS, read_ubl
from .validation import validate

#: Names of the embedded XML in a hybrid PDF (compared case-insensitively).
EMBEDDED_NAMES = ("factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml")
#: A PDF larger than this is not opened (its attachment is not looked for).
MAX_PDF_BYTES = 100 * 1024 * 1024


def read_document(document: ExtractionInput) -> Extraction | None:
    """The fields of ``document``'s e-invoice; None for a PDF without one."""
    head = document.head(1024)
    if head.startswith(b"%PDF") or b"%PDF-" in head:
        found = _embedded_xml(document)
        if found is None:
            return None
        where, data = found
    else:
        if document.size > safexml.MAX_XML_BYTES:
            raise ExtractionError(
                f"{document.filename}: {document.size / 1_048_576:.1f} MB of XML is more "
                f"than the {safexml.MAX_XML_BYTES // 1_048_576} MB limit; not read"
            )
        with document.open() as stream:
            data = stream.read(safexml.MAX_XML_BYTES + 1)
        where = document.filename
    root = safexml.parse(data, where)
    return to_extraction(read_xml(root, where))


def _embedded_xml(document: ExtractionInput) -> tuple[str, bytes] | None:
    """(name, bytes) of the e-invoice XML attached to a PDF, or None if it has none."""
    if document.size > MAX_PDF_BYTES:
        raise ExtractionError(
            f"{document.filename}: PDF larger than {MAX_PDF_BYTES // 1_048_576} MB; "
            "its attachments were not read"
        )
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        with document.open() as stream:
            reader = PdfReader(io.BytesIO(stream.read()), strict=False)
            attachments = reader.attachments
            for wanted in EMBEDDED_NAMES:
                for name, contents in attachments.items():
                    if name.lower() == wanted and contents:
                        data = contents[0]
                        where = f"{document.filename}: embedded {name}"
                        if len(data) > safexml.MAX_XML_BYTES:
                            raise ExtractionError(
                                f"{where}: more than the "
                                f"{safexml.MAX_XML_BYTES // 1_048_576} MB limit; not read"
                            )
                        return where, data
    except ExtractionError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ExtractionError(
            f"{document.filename}: the PDF's attachments cannot be read "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        ) from None
    return None


def read_xml(root: etree._Element, where: str) -> Read:
    """Dispatch on the root element; ExtractionError for anything else."""
    qname = etree.QName(root)
    if qname.namespace in (CII_NS, ZUGFERD1_NS) and qname.localname in (
        "CrossIndustryInvoice",
        "CrossIndustryDocument",
    ):
        return read_cii(root)
    if (qname.namespace, qname.localname) in (
        (INVOICE_NS, "Invoice"),
        (CREDIT_NOTE_NS, "CreditNote"),
    ):
        return read_ubl(root)
    shown = f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname
    raise ExtractionError(
        f"{where}: not an e-invoice (root element {shown[:200]}; expected a UN/CEFACT "
        "CrossIndustryInvoice or a UBL 2.1 Invoice/CreditNote)"
    )


def to_extraction(read: Read) -> Extraction:
    """The document fields and their provenance from what was read."""
    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}

    def put(name: str, value: Any, term: str) -> None:
        if value is None:
            return
        values[name] = value
        provenance[name] = f"{read.label}, {term}"

    t = read.terms
    for name in ("number", "document_date", "due_date", "net_amount", "gross_amount"):
        put(name, t[name].value, t[name].term)
    currency = t["currency"].value
    if isinstance(currency, str) and len(currency) == 3 and currency.isalpha():
        put("currency", currency.upper(), t["currency"].term)
    code = t["type_code"].value
    if isinstance(code, str):
        if code in CREDIT_NOTE_CODES:
            put("type", DocumentType.CREDIT_NOTE, f"{t['type_code'].term} {code}")
        elif code in INVOICE_CODES:
            # Incoming unless a company profile's VAT id or name says the
            # seller is one of ours (decided by the import stage).
            put("type", DocumentType.INCOMING_INVOICE, f"{t['type_code'].term} {code}")
    status = _payment_status(t["gross_amount"].value, t["paid_amount"].value, t["due_amount"].value)
    if status is not None:
        put("payment_status", status[0], status[1])
    fields: dict[str, str] = {}
    for name, term in read.fields.items():
        if isinstance(term.value, str) and term.value:
            fields[name] = term.value
            provenance[f"fields.{name}"] = f"{read.label}, {term.term}"
    fields["einvoice_syntax"] = read.syntax
    fields["einvoice_profile"] = read.profile[:1000]
    provenance["fields.einvoice_syntax"] = read.label
    provenance["fields.einvoice_profile"] = f"{read.label}, BT-24"
    if isinstance(code, str):
        fields["einvoice_type_code"] = code[:1000]
        provenance["fields.einvoice_type_code"] = f"{read.label}, BT-3"
    values["fields"] = fields
    try:
        metadata = DocumentMetadata(**values)
    except ValueError as exc:  # a value the model refuses (control characters...)
        raise ExtractionError(f"e-invoice values refused: {exc}") from None
    valid: bool | None = None
    errors: tuple[str, ...] = ()
    if read.root is not None:
        valid, errors = validate(read.root, read.flavor)
    return Extraction(
        metadata=metadata, provenance=provenance, einvoice_valid=valid, einvoice_errors=errors
    )


def _payment_status(gross: object, paid: object, due: object) -> tuple[PaymentStatus, str] | None:
    """Only what the document states: nothing due, or prepaid the whole total."""
    if not isinstance(gross, Decimal) or gross <= 0:
        return None
    if isinstance(due, Decimal) and due == 0:
        return PaymentStatus.PAID, "BT-115 amount due 0"
    if isinstance(paid, Decimal) and paid >= gross:
        return PaymentStatus.PAID, "BT-113 paid amount = BT-112 total"
    if isinstance(paid, Decimal) and 0 < paid < gross:
        return PaymentStatus.PARTIALLY_PAID, "BT-113 paid amount < BT-112 total"
    return None
