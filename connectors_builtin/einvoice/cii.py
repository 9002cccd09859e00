"""UN/CEFACT Cross Industry Invoice: Factur-X / ZUGFeRD 2.x, XRechnung CII, ZUGFeRD 1.0."""

from __future__ import annotations

from lxml import etree

from .fields import Read, Term, amount, child, children, cii_date, text

CII_NS = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
ZUGFERD1_NS = "urn:ferd:CrossIndustryDocument:invoice:1p0"


def profile_of(guideline: str | None, zugferd1: bool) -> tuple[str, str, str]:
    """(provenance label, human profile name, XSD flavour) from the guideline id."""
    g = (guideline or "").lower()
    if zugferd1:
        level = g.rpartition(":")[2] or "unknown"
        return "ZUGFeRD 1.0 XML", f"ZUGFeRD 1.0 {level.upper()}", "zugferd1"
    if "xrechnung" in g:
        version = g.rpartition("xrechnung_")[2] if "xrechnung_" in g else ""
        return "XRechnung CII", f"XRechnung {version}".strip(), "en16931"
    if "peppol" in g:
        return "Peppol CII", "Peppol BIS Billing 3.0", "en16931"
    for level, name in (
        ("extended", "EXTENDED"),
        ("basicwl", "BASIC WL"),
        ("basic", "BASIC"),
        ("minimum", "MINIMUM"),
    ):
        if g.endswith(level):
            return "Factur-X XML", f"Factur-X {name}", level
    if g.startswith("urn:cen.eu:en16931:2017"):
        return "Factur-X XML", "EN 16931", "en16931"
    return "CII XML", guideline or "unknown", "en16931"


def _party(party: etree._Element | None) -> tuple[str | None, str | None]:
    name = text(child(party, "Name"))
    vat = None
    for registration in children(party, "SpecifiedTaxRegistration"):
        ident = child(registration, "ID")
        if ident is not None and (ident.get("schemeID") or "").upper() == "VA":
            vat = text(ident)
            break
    return name, vat


def read_cii(root: etree._Element) -> Read:
    """Read a CII (or ZUGFeRD 1.0) invoice whose root namespace was checked."""
    zugferd1 = etree.QName(root).namespace == ZUGFERD1_NS
    if zugferd1:
        context = child(root, "SpecifiedExchangedDocumentContext")
        header = child(root, "HeaderExchangedDocument")
        transaction = child(root, "SpecifiedSupplyChainTradeTransaction")
        agreement = child(transaction, "ApplicableSupplyChainTradeAgreement")
        settlement = child(transaction, "ApplicableSupplyChainTradeSettlement")
        summation = child(settlement, "SpecifiedTradeSettlementMonetarySummation")
        order = text(child(agreement, "BuyerOrderReferencedDocument", "ID"))
    else:
        context = child(root, "ExchangedDocumentContext")
        header = child(root, "ExchangedDocument")
        transaction = child(root, "SupplyChainTradeTransaction")
        agreement = child(transaction, "ApplicableHeaderTradeAgreement")
        settlement = child(transaction, "ApplicableHeaderTradeSettlement")
        summation = child(settlement, "SpecifiedTradeSettlementHeaderMonetarySummation")
        order = text(child(agreement, "BuyerOrderReferencedDocument", "IssuerAssignedID"))
    guideline = text(child(context, "GuidelineSpecifiedDocumentContextParameter", "ID"))
    label, profile, flavor = profile_of(guideline, zugferd1)
    read = Read("CII", label, profile, guideline, root=root, flavor=flavor)
    t = read.terms
    t["number"] = Term(text(child(header, "ID")), "BT-1")
    t["type_code"] = Term(text(child(header, "TypeCode")), "BT-3")
    t["document_date"] = Term(cii_date(child(header, "IssueDateTime", "DateTimeString")), "BT-2")
    due = None
    for terms in children(settlement, "SpecifiedTradePaymentTerms"):
        due = cii_date(child(terms, "DueDateDateTime", "DateTimeString"))
        if due is not None:
            break
    t["due_date"] = Term(due, "BT-9")
    t["currency"] = Term(text(child(settlement, "InvoiceCurrencyCode")), "BT-5")
    t["net_amount"] = Term(amount(child(summation, "TaxBasisTotalAmount")), "BT-109")
    t["gross_amount"] = Term(amount(child(summation, "GrandTotalAmount")), "BT-112")
    t["paid_amount"] = Term(amount(child(summation, "TotalPrepaidAmount")), "BT-113")
    t["due_amount"] = Term(amount(child(summation, "DuePayableAmount")), "BT-115")
    read.set_parties(
        _party(child(agreement, "SellerTradeParty")),
        _party(child(agreement, "BuyerTradeParty")),
        text(child(agreement, "BuyerReference")),
        order,
    )
    return read
