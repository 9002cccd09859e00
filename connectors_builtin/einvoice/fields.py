"""The result both syntaxes fill in: EN 16931 business terms, as read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from lxml import etree

#: Custom field names (``fields`` of a document) the extractor fills.
FIELD_NAMES = (
    "seller_name",
    "seller_vat_id",
    "buyer_name",
    "buyer_vat_id",
    "buyer_reference",
    "order_reference",
    "einvoice_syntax",
    "einvoice_profile",
    "einvoice_type_code",
)

# UNTDID 1001 codes of EN 16931 (and its CIUS): credit notes and their kin.
CREDIT_NOTE_CODES = frozenset(
    {"81", "83", "261", "262", "296", "308", "381", "396", "420", "458", "532"}
)
# Commercial invoices and their kin (corrected, prepayment, self-billed, partial...).
INVOICE_CODES = frozenset(
    {
        "71",
        "80",
        "82",
        "84",
        "102",
        "218",
        "219",
        "326",
        "331",
        "380",
        "382",
        "383",
        "384",
        "385",
        "386",
        "387",
        "388",
        "389",
        "390",
        "393",
        "394",
        "395",
        "456",
        "457",
        "527",
        "575",
        "623",
        "633",
        "751",
        "780",
        "875",
        "876",
        "877",
        "935",
    }
)

_SPACE = re.compile(r"\s+")


@dataclass
class Term:
    """One value read from the XML, with the business term it answers."""

    value: object
    term: str


@dataclass
class Read:
    """Everything read from one e-invoice."""

    syntax: str  # "CII" or "UBL"
    label: str  # provenance label: "Factur-X XML", "XRechnung UBL"...
    profile: str  # human profile name
    guideline: str | None  # the raw specification identifier
    terms: dict[str, Term] = field(default_factory=dict)
    fields: dict[str, Term] = field(default_factory=dict)
    root: etree._Element | None = None
    flavor: str = ""  # what validation.py needs to pick the schema

    def set_parties(
        self,
        seller: tuple[str | None, str | None],
        buyer: tuple[str | None, str | None],
        buyer_reference: str | None,
        order_reference: str | None,
    ) -> None:
        """The custom fields both syntaxes share, under their business terms.

        ``seller`` and ``buyer`` are (name, VAT id) pairs. One place maps them
        to BT numbers, so CII and UBL documents can never be labelled apart.
        """
        f = self.fields
        f["seller_name"] = Term(seller[0], "BT-27")
        f["seller_vat_id"] = Term(seller[1], "BT-31")
        f["buyer_name"] = Term(buyer[0], "BT-44")
        f["buyer_vat_id"] = Term(buyer[1], "BT-48")
        f["buyer_reference"] = Term(buyer_reference, "BT-10")
        f["order_reference"] = Term(order_reference, "BT-13")


def local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def child(element: etree._Element | None, *path: str) -> etree._Element | None:
    """Follow child elements by local name (namespace-agnostic within a known root)."""
    for name in path:
        if element is None:
            return None
        element = next((c for c in element if local(c.tag) == name), None)
    return element


def children(element: etree._Element | None, name: str) -> list[etree._Element]:
    if element is None:
        return []
    return [c for c in element if local(c.tag) == name]


def text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    value = _SPACE.sub(" ", element.text).strip()
    return value[:1000] or None


def amount(element: etree._Element | None) -> Decimal | None:
    value = text(element)
    if value is None:
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def iso_date(value: str | None) -> date | None:
    """``2026-03-14`` (UBL) -> date; None if not a date."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def cii_date(element: etree._Element | None) -> date | None:
    """A CII ``DateTimeString`` (format 102: ``20260314``) -> date."""
    value = text(element)
    if value is None:
        return None
    fmt = element.get("format") if element is not None else None
    if fmt in (None, "102") and len(value) == 8 and value.isdigit():
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError:
            return None
    return iso_date(value)
