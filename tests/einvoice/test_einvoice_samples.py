"""The e-invoice extractor on real, published samples (tests/data/einvoices/README.md).

Every expected value below was read by hand from the sample's XML.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from invoicesync.connectors_builtin.einvoice import EInvoiceExtractor
from invoicesync.plugins import (
    DocumentType,
    Extraction,
    ExtractionError,
    ExtractionInput,
    PaymentStatus,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "einvoices"


def extract(name: str) -> Extraction | None:
    document = ExtractionInput(name, None, DATA / name)
    extractor = EInvoiceExtractor()
    if not extractor.detect(document):
        return None
    return extractor.extract(document)


FACTURX_FR = {  # factur-x sample invoice F20260023 (Akretion), all profiles
    "number": "F20260023",
    "document_date": date(2026, 1, 31),
    "net_amount": Decimal("100.00"),
    "gross_amount": Decimal("104.90"),
    "currency": "EUR",
    "type": DocumentType.INCOMING_INVOICE,
}

CASES = [
    # (file, metadata, fields, profile label in provenance)
    (
        "facturx-pkg_factur-x-minimum.xml",
        FACTURX_FR,
        {"seller_vat_id": "FR11123456782", "einvoice_profile": "Factur-X MINIMUM"},
        "Factur-X XML",
    ),
    (
        "facturx-pkg_factur-x-basic.xml",
        {**FACTURX_FR, "due_date": date(2026, 3, 2)},
        {"seller_vat_id": "FR11123456782", "buyer_vat_id": "FR 05 987 654 321"},
        "Factur-X XML",
    ),
    (
        "facturx-pkg_factur-x-en16931.xml",
        {**FACTURX_FR, "due_date": date(2026, 3, 2)},
        {"einvoice_profile": "EN 16931", "einvoice_syntax": "CII", "einvoice_type_code": "380"},
        "Factur-X XML",
    ),
    (
        "facturx-pkg_factur-x-extended.xml",
        {**FACTURX_FR, "due_date": date(2026, 3, 2)},
        {"einvoice_profile": "Factur-X EXTENDED"},
        "Factur-X XML",
    ),
    (
        "facturx-pkg_invoice_EN16931.pdf",  # PDF/A-3 with factur-x.xml attached
        {**FACTURX_FR, "due_date": date(2026, 3, 2)},
        {"seller_vat_id": "FR11123456782"},
        "Factur-X XML",
    ),
    (
        "facturx-pkg_zugferd-basic.xml",
        {
            "number": "471102",
            "document_date": date(2013, 3, 5),
            "net_amount": Decimal("198.00"),
            "gross_amount": Decimal("235.62"),
            "currency": "EUR",
        },
        {"seller_vat_id": "DE123456789", "einvoice_profile": "ZUGFeRD 1.0 BASIC"},
        "ZUGFeRD 1.0 XML",
    ),
    (
        "facturx-pkg_zugferd-comfort.xml",
        {
            "number": "471102",
            "due_date": date(2013, 4, 4),
            "gross_amount": Decimal("529.87"),
        },
        {"einvoice_profile": "ZUGFeRD 1.0 COMFORT"},
        "ZUGFeRD 1.0 XML",
    ),
    (
        "django-xrechnung_hybrid.pdf",  # pypdf-made PDF with ZUGFeRD 2.3 EN16931 XML
        {
            "number": "471102",
            "document_date": date(2024, 11, 15),
            "net_amount": Decimal("473.00"),
            "gross_amount": Decimal("529.87"),
        },
        {"seller_vat_id": "DE123456789"},
        "Factur-X XML",
    ),
    (
        "django-xrechnung_xrechnung-cii.xml",
        {"number": "471102", "gross_amount": Decimal("529.87"), "currency": "EUR"},
        {"einvoice_syntax": "CII"},
        "XRechnung CII",
    ),
    (
        "facturx-pkg_ubl-21-en16931.xml",
        {
            "number": "F124212",
            "document_date": date(2026, 6, 17),
            "due_date": date(2026, 7, 16),
            "net_amount": Decimal("273.00"),
            "gross_amount": Decimal("308.03"),
            "payment_status": PaymentStatus.PARTIALLY_PAID,  # prepaid 100.00 of 308.03
        },
        {
            "seller_vat_id": "FR11999999998",
            "buyer_vat_id": "FR19787878784",
            "einvoice_syntax": "UBL",
        },
        "UBL XML",
    ),
    (
        "django-xrechnung_ubl.xml",
        {
            "number": "INV-0001",
            "document_date": date(2026, 9, 9),
            "due_date": date(2026, 10, 9),
            "gross_amount": Decimal("119.00"),
            "type": DocumentType.INCOMING_INVOICE,
        },
        {"einvoice_profile": "XRechnung 3.0"},
        "XRechnung UBL",
    ),
    (
        "django-xrechnung_ubl-credit.xml",  # CreditNote, 381, due date in PaymentMeans
        {"number": "INV-0001", "type": DocumentType.CREDIT_NOTE, "due_date": date(2026, 10, 9)},
        {"einvoice_type_code": "381"},
        "XRechnung UBL",
    ),
    (
        "erechnung-core_de-standard-19.xml",
        {
            "number": "RE-2026-1001",
            "document_date": date(2026, 7, 8),
            "due_date": date(2026, 8, 7),
            "net_amount": Decimal("1499.95"),
            "gross_amount": Decimal("1784.94"),
        },
        {"seller_vat_id": "DE123456789", "buyer_vat_id": "DE987654321"},
        "XRechnung UBL",
    ),
    (
        "erechnung-core_de-reverse-charge.xml",
        {"number": "RE-2026-1004", "gross_amount": Decimal("4500.00")},
        {"einvoice_profile": "XRechnung 3.0"},
        "XRechnung UBL",
    ),
]


@pytest.mark.parametrize("name, metadata, fields, label", CASES, ids=[c[0] for c in CASES])
def test_fields_match_the_xml(
    name: str, metadata: dict[str, object], fields: dict[str, str], label: str
) -> None:
    result = extract(name)
    assert result is not None
    for key, value in metadata.items():
        assert getattr(result.metadata, key) == value, key
        assert key in result.metadata.model_fields_set
        assert result.provenance[key].startswith(label), result.provenance[key]
    for key, value in fields.items():
        assert result.metadata.fields[key] == value, key
    # Amounts are decimals, never floats.
    assert isinstance(result.metadata.gross_amount, Decimal)
    assert result.einvoice_valid is True, result.einvoice_errors


def test_provenance_names_the_business_term() -> None:
    result = extract("facturx-pkg_invoice_EN16931.pdf")
    assert result is not None
    assert result.provenance["document_date"] == "Factur-X XML, BT-2"
    assert result.provenance["number"] == "Factur-X XML, BT-1"
    assert result.provenance["gross_amount"] == "Factur-X XML, BT-112"
    assert result.provenance["fields.buyer_vat_id"] == "Factur-X XML, BT-48"


def test_a_plain_pdf_is_not_opened() -> None:
    assert extract("django-xrechnung_no-xml.pdf") is None


def test_an_unpaid_invoice_states_no_payment_status() -> None:
    result = extract("facturx-pkg_factur-x-en16931.xml")  # DuePayableAmount 104.90
    assert result is not None
    assert "payment_status" not in result.metadata.model_fields_set


def test_schema_errors_are_recorded(tmp_path: Path) -> None:
    text = (DATA / "django-xrechnung_ubl.xml").read_text(encoding="utf-8")
    broken = text.replace(
        "<cbc:IssueDate>2026-09-09</cbc:IssueDate>", "<cbc:IssueDate>soon</cbc:IssueDate>"
    )
    assert broken != text
    path = tmp_path / "broken.xml"
    path.write_text(broken, encoding="utf-8")
    result = EInvoiceExtractor().extract(ExtractionInput("broken.xml", None, path))
    assert result is not None
    assert result.einvoice_valid is False
    assert result.einvoice_errors and "IssueDate" in result.einvoice_errors[0]
    assert "document_date" not in result.metadata.model_fields_set  # not a date: not read


def test_a_pdf_whose_attachment_is_broken_xml_is_a_clear_error() -> None:
    with pytest.raises(ExtractionError, match=r"embedded factur-x\.xml: not well-formed XML"):
        extract("django-xrechnung_malformed-embedded.pdf")
