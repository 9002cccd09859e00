"""OASIS UBL 2.1 Invoice and CreditNote: XRechnung UBL, Peppol BIS Billing 3.0."""

from __future__ import annotations

from lxml import etree

from .fields import Read, Term, amount, child, children, iso_date, text

INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"


def profile_of(customization: str | None) -> tuple[str, str]:
    c = (customization or "").lower()
    if "xrechnung" in c:
        version = c.rpartition("xrechnung_")[2] if "xrechnung_" in c else ""
        return "XRechnung UBL", f"XRechnung {version}".strip()
    if "peppol" in c:
        return "Peppol UBL", "Peppol BIS Billing 3.0"
    if c.startswith("urn:cen.eu:en16931:2017"):
        return "UBL XML", "EN 16931"
    return "UBL XML", customization or "UBL 2.1"


def _party(party: etree._Element | None) -> tuple[str | None, str | None]:
    party = child(party, "Party")
    name = text(child(party, "PartyLegalEntity", "RegistrationName")) or text(
        child(party, "PartyName", "Name")
    )
    vat = None
    for scheme in children(party, "PartyTaxScheme"):
        if (text(child(scheme, "TaxScheme", "ID")) or "").upper() == "VAT":
            vat = text(child(scheme, "CompanyID"))
            break
    return name, vat


def read_ubl(root: etree._Element) -> Read:
    """Read a UBL Invoice or CreditNote whose root namespace was checked."""
    credit = etree.QName(root).namespace == CREDIT_NOTE_NS
    customization = text(child(root, "CustomizationID"))
    label, profile = profile_of(customization)
    flavor = "ubl-2.1-creditnote" if credit else "ubl-2.1-invoice"
    read = Read("UBL", label, profile, customization, root=root, flavor=flavor)
    t = read.terms
    t["number"] = Term(text(child(root, "ID")), "BT-1")
    code = text(child(root, "CreditNoteTypeCode" if credit else "InvoiceTypeCode"))
    t["type_code"] = Term(code, "BT-3")
    t["document_date"] = Term(iso_date(text(child(root, "IssueDate"))), "BT-2")
    due = iso_date(text(child(root, "DueDate")))
    if due is None:
        for means in children(root, "PaymentMeans"):
            due = iso_date(text(child(means, "PaymentDueDate")))
            if due is not None:
                break
    t["due_date"] = Term(due, "BT-9")
    t["currency"] = Term(text(child(root, "DocumentCurrencyCode")), "BT-5")
    total = child(root, "LegalMonetaryTotal")
    t["net_amount"] = Term(amount(child(total, "TaxExclusiveAmount")), "BT-109")
    t["gross_amount"] = Term(amount(child(total, "TaxInclusiveAmount")), "BT-112")
    t["paid_amount"] = Term(amount(child(total, "PrepaidAmount")), "BT-113")
    t["due_amount"] = Term(amount(child(total, "PayableAmount")), "BT-115")
    read.set_parties(
        _party(child(root, "AccountingSupplierParty")),
        _party(child(root, "AccountingCustomerParty")),
        text(child(root, "BuyerReference")),
        text(child(root, "OrderReference", "ID")),
    )
    return read
