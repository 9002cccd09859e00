"""The deterministic sample supplier portal behind the ``demo`` source.

Document ``i`` is a pure function of ``(seed, i, anchor)``: it is generated from
a random generator seeded with exactly those values, so any document can be
produced without producing the ones before it (a resumed fetch starts in the
middle), and the same inputs always give the same metadata and the same PDF
bytes. ``anchor`` is the day "today" was when the portal was first read; all
dates lie in the two years before it.

The portal mimics a small German firm's suppliers: a telecom provider with
monthly bills, an office supplier, a US cloud host billing in USD, a railway
selling tickets, and a general supplier. Between them they produce every
document type, payment status and a realistic spread of tags (in varying
case, because users type tags by hand), custom fields and notes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import accumulate

from invoicesync.plugins import DocumentMetadata, DocumentType, PaymentStatus

from .pdf import PdfLine, render_pdf

__all__ = ["DEMO_COMPANIES", "DemoDocument", "generate"]

DEMO_COMPANIES: list[tuple[str, str]] = [
    ("acme", "ACME GmbH"),
    ("telekom", "Telekom Deutschland GmbH"),
    ("officeplus", "OfficePlus Bürobedarf AG"),
    ("cloudhost", "CloudHost Inc."),
    ("railways", "Railways Travel GmbH"),
]
"""The companies (id, name) the demo portal's documents belong to.

``config.example.yaml`` declares these ids under ``companies:``.
"""

HISTORY_DAYS = 730
"""Document dates lie in the last two years before the anchor day."""

# Number prefixes per document type, as German portals print them.
_PREFIX: dict[DocumentType, str] = {
    DocumentType.INCOMING_INVOICE: "RE",
    DocumentType.SALES_INVOICE: "AR",
    DocumentType.CREDIT_NOTE: "GS",
    DocumentType.RECEIPT: "QU",
    DocumentType.PAYMENT_RECEIPT: "ZB",
    DocumentType.STATEMENT: "KA",
    DocumentType.MISC: "DOC",
}

_TITLE: dict[DocumentType, str] = {
    DocumentType.INCOMING_INVOICE: "Invoice",
    DocumentType.SALES_INVOICE: "Sales invoice",
    DocumentType.CREDIT_NOTE: "Credit note",
    DocumentType.RECEIPT: "Receipt",
    DocumentType.PAYMENT_RECEIPT: "Payment confirmation",
    DocumentType.STATEMENT: "Account statement",
    DocumentType.MISC: "Notice",
}

# Types carrying a due date (something is owed).
_DUE_TYPES = frozenset({DocumentType.INCOMING_INVOICE, DocumentType.SALES_INVOICE})


@dataclass(frozen=True)
class _Company:
    id: str
    name: str
    weight: int
    currency: str
    vat: Decimal  # VAT rate applied to net amounts (0 for the US supplier)
    amount_range: tuple[int, int]  # net amount in cents
    types: tuple[tuple[DocumentType, int], ...]  # (type, weight)
    tags: tuple[str, ...]  # tags this supplier's documents usually carry
    items: tuple[str, ...]  # line item descriptions
    notes: tuple[str, ...]


_ALL_TYPES = tuple(DocumentType)

_COMPANIES: tuple[_Company, ...] = (
    _Company(
        "acme",
        "ACME GmbH",
        3,
        "EUR",
        Decimal("0.19"),
        (5_000, 500_000),
        (
            (DocumentType.INCOMING_INVOICE, 10),
            (DocumentType.SALES_INVOICE, 6),
            (DocumentType.CREDIT_NOTE, 2),
            (DocumentType.MISC, 2),
        ),
        ("hardware", "Hardware", "project-x"),
        ("Anvil, forged", "Rocket skates", "Giant magnet", "Consulting hours"),
        ("Framework agreement 2024", "Delivered to warehouse B", "Partial delivery"),
    ),
    _Company(
        "telekom",
        "Telekom Deutschland GmbH",
        3,
        "EUR",
        Decimal("0.19"),
        (2_999, 19_999),
        (
            (DocumentType.INCOMING_INVOICE, 10),
            (DocumentType.PAYMENT_RECEIPT, 3),
            (DocumentType.STATEMENT, 2),
            (DocumentType.MISC, 1),
        ),
        ("phone", "telecom", "Phone"),
        ("Mobile plan Business L", "Fibre 250 Mbit/s", "Roaming EU", "Device instalment"),
        ("Monthly bill", "Direct debit on the due date", "Contract no. 4411-0815"),
    ),
    _Company(
        "officeplus",
        "OfficePlus Bürobedarf AG",
        2,
        "EUR",
        Decimal("0.19"),
        (899, 59_900),
        (
            (DocumentType.INCOMING_INVOICE, 8),
            (DocumentType.RECEIPT, 4),
            (DocumentType.CREDIT_NOTE, 2),
        ),
        ("office", "Office", "supplies"),
        ("Printer paper A4, 5 reams", "Toner cartridge black", "Desk chair", "Sticky notes"),
        ("Ordered by J. Doe", "Returned: damaged in transit", "Recurring order"),
    ),
    _Company(
        "cloudhost",
        "CloudHost Inc.",
        2,
        "USD",
        Decimal("0"),
        (1_000, 250_000),
        (
            (DocumentType.INCOMING_INVOICE, 8),
            (DocumentType.PAYMENT_RECEIPT, 3),
            (DocumentType.CREDIT_NOTE, 1),
            (DocumentType.STATEMENT, 1),
        ),
        ("software", "Software", "SOFTWARE", "hosting"),
        ("Virtual machines", "Object storage", "Support plan", "Domain renewal"),
        ("Reverse charge: VAT to be accounted for by the recipient", "Usage-based billing"),
    ),
    _Company(
        "railways",
        "Railways Travel GmbH",
        2,
        "EUR",
        Decimal("0.07"),
        (1_990, 29_990),
        (
            (DocumentType.RECEIPT, 8),
            (DocumentType.INCOMING_INVOICE, 3),
            (DocumentType.CREDIT_NOTE, 1),
            (DocumentType.MISC, 1),
        ),
        ("travel", "Travel", "TRAVEL"),
        ("Ticket Berlin - Munich", "Ticket Hamburg - Cologne", "Seat reservation", "BahnCard"),
        ("Business trip, customer visit", "Trade fair", "Refund after delay"),
    ),
)
assert [(c.id, c.name) for c in _COMPANIES] == DEMO_COMPANIES

# Cumulative weights, computed once: random.choices would otherwise sum them
# for every document.
_COMPANY_CUM_WEIGHTS = list(accumulate(c.weight for c in _COMPANIES))
_TYPE_CUM_WEIGHTS = {
    c.id: ([t for t, _ in c.types], list(accumulate(w for _, w in c.types))) for c in _COMPANIES
}
_COST_CENTERS = ("4711", "4712", "4713", "5000")
_PROJECTS = ("apollo", "gemini", "mercury")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class DemoDocument:
    """One generated portal document: its identity, metadata and PDF bytes."""

    index: int
    external_id: str
    filename: str
    metadata: DocumentMetadata
    content: bytes


def _payment_status(
    rng: random.Random, doc_type: DocumentType, due: date | None, anchor: date
) -> PaymentStatus:
    if doc_type in (DocumentType.RECEIPT, DocumentType.PAYMENT_RECEIPT):
        return PaymentStatus.PAID
    if doc_type in (DocumentType.STATEMENT, DocumentType.MISC):
        return PaymentStatus.UNKNOWN
    roll = rng.random()
    if due is not None and due < anchor:
        # Overdue invoices are mostly paid by now; a few linger.
        if roll < 0.8:
            return PaymentStatus.PAID
        if roll < 0.88:
            return PaymentStatus.PARTIALLY_PAID
        if roll < 0.96:
            return PaymentStatus.UNPAID
        return PaymentStatus.UNKNOWN
    if roll < 0.35:
        return PaymentStatus.PAID
    if roll < 0.45:
        return PaymentStatus.PARTIALLY_PAID
    if roll < 0.9:
        return PaymentStatus.UNPAID
    return PaymentStatus.UNKNOWN


def generate(index: int, seed: int, anchor: date) -> DemoDocument:
    """Generate document number ``index`` (0-based) of the portal.

    Pure: equal arguments give equal documents, byte for byte.
    """
    # A string seed is hashed with SHA-512 by random.seed, which is stable
    # across Python versions and processes (unlike hash()).
    rng = random.Random(f"invoicesync-demo:{seed}:{index}")
    company = rng.choices(_COMPANIES, cum_weights=_COMPANY_CUM_WEIGHTS)[0]
    types, cum_weights = _TYPE_CUM_WEIGHTS[company.id]
    # One document in twelve is of any type, so every supplier shows variety
    # and rare types (statements, misc) appear in small samples too.
    if rng.random() < 1 / 12:
        doc_type = rng.choice(_ALL_TYPES)
    else:
        doc_type = rng.choices(types, cum_weights=cum_weights)[0]

    document_date = anchor - timedelta(days=rng.randrange(HISTORY_DAYS))
    due_date = None
    if doc_type in _DUE_TYPES:
        due_date = document_date + timedelta(days=rng.choice((7, 14, 14, 30, 30)))

    number: str | None = f"{_PREFIX[doc_type]}-{document_date.year}-{index + 1:06d}"
    if doc_type is DocumentType.MISC and rng.random() < 0.5:
        number = None  # notices often carry no number

    # Amounts: statements and notices usually have none; a few documents of
    # other types were scanned without anyone typing the amount in.
    net = gross = None
    currency: str | None = None
    has_amount = (
        rng.random() < 0.2
        if doc_type in (DocumentType.STATEMENT, DocumentType.MISC)
        else rng.random() < 0.95
    )
    items: list[tuple[str, int, Decimal]] = []
    if has_amount:
        low, high = company.amount_range
        for _ in range(rng.randint(1, 3)):
            cents = rng.randint(low, high) // 3
            items.append((rng.choice(company.items), rng.randint(1, 4), Decimal(cents) / 100))
        net = sum((qty * price for _, qty, price in items), Decimal("0.00")).quantize(_CENT)
        gross = (net * (1 + company.vat)).quantize(_CENT)
        currency = company.currency
        if company.currency == "EUR" and rng.random() < 0.04:
            currency = "USD"  # the odd foreign purchase
        elif rng.random() < 0.03:
            currency = None  # amount known, currency never recorded

    status = _payment_status(rng, doc_type, due_date, anchor)

    tags = set(rng.sample(company.tags, rng.randint(0, 2)))
    if rng.random() < 0.06:
        tags.add(rng.choice(("private", "Private")))
    if rng.random() < 0.1:
        tags.add("tax")

    fields: dict[str, str] = {}
    if rng.random() < 0.7:
        fields["cost_center"] = rng.choice(_COST_CENTERS)
    if rng.random() < 0.2:
        fields["project"] = rng.choice(_PROJECTS)

    note = rng.choice(company.notes) if rng.random() < 0.3 else None
    approved = status is PaymentStatus.PAID or rng.random() < 0.3

    # The values are generated, hence known valid: skipping pydantic's
    # validation here is a third of the generation time. (The tests validate
    # a sample to keep this honest.)
    metadata = DocumentMetadata.model_construct(
        company=company.id,
        type=doc_type,
        number=number,
        document_date=document_date,
        due_date=due_date,
        net_amount=net,
        gross_amount=gross,
        currency=currency,
        payment_status=status,
        approved=approved,
        tags=frozenset(tags),
        note=note,
        fields=fields,
    )
    external_id = f"inv-{index + 1:06d}"
    content = _render(company, metadata, items, external_id)
    filename = f"{number or external_id}.pdf"
    return DemoDocument(index, external_id, filename, metadata, content)


def _money(value: Decimal, currency: str | None) -> str:
    return f"{value:,.2f} {currency or ''}".rstrip()


def _render(
    company: _Company,
    meta: DocumentMetadata,
    items: list[tuple[str, int, Decimal]],
    external_id: str,
) -> bytes:
    title = _TITLE[meta.type]
    heading = f"{title} {meta.number}" if meta.number else title
    lines = [
        PdfLine(50, 790, company.name, 16, bold=True),
        PdfLine(50, 772, "Sample supplier portal - generated by invoicesync demo", 8),
        PdfLine(50, 730, heading, 14, bold=True),
        PdfLine(50, 712, f"Date: {meta.document_date:%Y-%m-%d}"),
    ]
    y = 698
    if meta.due_date is not None:
        lines.append(PdfLine(50, y, f"Due date: {meta.due_date:%Y-%m-%d}"))
        y -= 14
    lines.append(PdfLine(50, y, f"Reference: {external_id}"))
    y -= 34
    rules = [y + 14]
    for description, qty, price in items:
        lines.append(PdfLine(50, y, f"{qty} x {description}"))
        lines.append(PdfLine(400, y, _money(qty * price, meta.currency)))
        y -= 14
    if meta.net_amount is not None and meta.gross_amount is not None:
        rules.append(y + 8)
        y -= 10
        lines.append(PdfLine(300, y, "Net"))
        lines.append(PdfLine(400, y, _money(meta.net_amount, meta.currency)))
        y -= 14
        lines.append(PdfLine(300, y, "VAT"))
        vat = meta.gross_amount - meta.net_amount
        lines.append(PdfLine(400, y, _money(vat, meta.currency)))
        y -= 14
        lines.append(PdfLine(300, y, "Total", bold=True))
        lines.append(PdfLine(400, y, _money(meta.gross_amount, meta.currency), bold=True))
        y -= 28
    lines.append(PdfLine(50, y, f"Payment status: {meta.payment_status.value.replace('_', ' ')}"))
    y -= 14
    if meta.note:
        lines.append(PdfLine(50, y, f"Note: {meta.note}"))
    assert meta.document_date is not None
    return render_pdf(lines, title=heading, day=meta.document_date, rules=rules)
