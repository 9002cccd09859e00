"""The document model every part of invoicesync speaks (SPEC section 1).

Sources describe what they found with :class:`DocumentMetadata` inside a
:class:`SourceDocument`; the catalog turns that into a :class:`Document` (with
its id, import date and content hash) which targets and restriction checks see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from .names import CONTROL_CHARACTERS

__all__ = [
    "Document",
    "DocumentMetadata",
    "DocumentType",
    "PaymentStatus",
    "SkippedDocument",
    "SourceDocument",
]


class DocumentType(StrEnum):
    """What kind of business document this is."""

    INCOMING_INVOICE = "incoming_invoice"
    SALES_INVOICE = "sales_invoice"
    CREDIT_NOTE = "credit_note"
    RECEIPT = "receipt"
    PAYMENT_RECEIPT = "payment_receipt"
    STATEMENT = "statement"
    MISC = "misc"


class PaymentStatus(StrEnum):
    """Whether the document has been paid."""

    PAID = "paid"
    PARTIALLY_PAID = "partially_paid"
    UNPAID = "unpaid"
    UNKNOWN = "unknown"


_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Control characters (C0, DEL, C1) have no business in metadata strings: they
# break log lines, terminals and file names.


def _no_control_chars(value: str | None) -> str | None:
    if value is not None and CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters (NUL, newline, escape...)")
    return value


def _currency(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().upper()
    if not _CURRENCY.match(value):
        raise ValueError("expected a three-letter ISO 4217 code such as EUR or USD")
    return value


MAX_AMOUNT_DIGITS = 15
"""Amounts are below 10^15: at most this many digits before the point."""
MAX_AMOUNT_DECIMALS = 6
"""Amounts have at most this many decimal places (trailing zeros beyond are dropped)."""


def _amount(value: Decimal | None) -> Decimal | None:
    """Bound an amount without arithmetic: ``1e999999999`` must not raise ``Overflow``.

    Everything here reads the decimal's digits and exponent (``as_tuple``);
    no operation that applies a context (``abs``, ``+``, comparisons with
    rounding) touches the value before it is known to be of sane size.
    """
    if value is None:
        return None
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    if not any(digits):
        # Zero, whatever exponent it was written with (0E+999999999).
        return Decimal((sign, (0,), min(max(exponent, -MAX_AMOUNT_DECIMALS), 0)))
    if exponent + len(digits) > MAX_AMOUNT_DIGITS:
        raise ValueError(
            f"amount is too large (at most {MAX_AMOUNT_DIGITS} digits before the point)"
        )
    if exponent < -MAX_AMOUNT_DECIMALS:
        extra = -MAX_AMOUNT_DECIMALS - exponent
        if extra >= len(digits) or any(digits[-extra:]):
            raise ValueError(f"at most {MAX_AMOUNT_DECIMALS} decimal places")
        return Decimal((sign, digits[:-extra], -MAX_AMOUNT_DECIMALS))
    if exponent > 0:
        # 1.5E+3 is stored and rendered as 1500, as people write it.
        return Decimal((sign, digits + (0,) * exponent, 0))
    return value


CleanStr = Annotated[str, AfterValidator(_no_control_chars), Field(max_length=1000)]
CurrencyCode = Annotated[str, AfterValidator(_currency)]
# Amounts are Decimal, never float, and bounded by _amount (plugin API 1.2).
# Strings and integers are taken as they are; a float (JSON 12.5 in a sidecar)
# is converted through its repr, the shortest decimal that round-trips, i.e.
# the digits that were written (see DocumentMetadata.amount_not_float), so
# binary noise never enters the catalog.
Amount = Annotated[
    Decimal,
    AfterValidator(_amount),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
]


class DocumentMetadata(BaseModel):
    """The descriptive fields of a document, as a source or a sidecar gives them.

    Every field is optional; unknown keys are rejected so that a typo in a
    sidecar (``documnet_date``) is an error rather than silently ignored.
    """

    # defer_build: the validator is built when a document is first validated,
    # not at import (a run that handles no document never needs it).
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True
    )

    company: CleanStr | None = None
    type: DocumentType = DocumentType.MISC
    number: CleanStr | None = None
    document_date: date | None = None
    due_date: date | None = None
    net_amount: Amount | None = None
    gross_amount: Amount | None = None
    currency: CurrencyCode | None = None
    payment_status: PaymentStatus = PaymentStatus.UNKNOWN
    approved: bool = False
    tags: frozenset[CleanStr] = frozenset()
    note: Annotated[str, Field(max_length=10_000)] | None = None
    fields: dict[CleanStr, CleanStr] = Field(default_factory=dict)

    @field_validator("net_amount", "gross_amount", mode="before")
    @classmethod
    def amount_not_float(cls, value: Any) -> Any:
        """Turn a float into the Decimal of its shortest repr (``12.1`` -> ``Decimal("12.1")``)."""
        if isinstance(value, float):
            # A float that is an exact short decimal (JSON 12.5) is converted via
            # its repr, which is the shortest round-tripping form.
            return Decimal(repr(value))
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def tags_from_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("tags must be a list of strings, not one string")
        return value


@dataclass(frozen=True)
class SourceDocument:
    """One document as a source hands it to the catalog.

    ``content`` is the bytes themselves, the path of a local file that the
    catalog copies (large attachments need not sit in memory), or (since plugin
    API 1.2) a binary file object open for reading, seekable, which the engine
    reads from its start (it may read it more than once). A file object lets a
    source deliver exactly what it opened and checked, with no second lookup
    by path; it must stay open until the generator is resumed, and the source
    closes it then (the ``folder`` source does this).
    ``cursor`` is an optional checkpoint: once this document is stored, the
    source may resume from that cursor after an interruption. The catalog saves
    the document and the checkpoint in one transaction.
    """

    external_id: str
    filename: str
    content: bytes | Path | BinaryIO
    media_type: str | None = None
    metadata: DocumentMetadata = field(default_factory=DocumentMetadata)
    cursor: str | None = None
    fingerprint: str | None = None
    """A cheap token that changes whenever content or metadata change (size and
    mtime of a file and its sidecar, an ETag...). When the catalog already holds
    this document with the same fingerprint it skips reading it altogether,
    which keeps a no-op re-sync of a large folder fast."""
    guessed: frozenset[str] = frozenset()
    """Names of metadata fields the source only guessed (a mail's date standing
    in for the document date): extractors may replace them, while every other
    field the source sets wins over extracted ones (API 1.2)."""


@dataclass(frozen=True)
class SkippedDocument:
    """A document the source found but could not import (malformed metadata...).

    The engine logs it as ``document.failed`` with ``reason`` and counts it;
    the rest of the fetch goes on. ``reason`` must not contain secrets.
    """

    external_id: str
    reason: str
    cursor: str | None = None


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Document(DocumentMetadata):
    """A document in the catalog: metadata plus identity and content facts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    source: str
    external_id: str
    import_date: Annotated[datetime, AfterValidator(_utc)]
    filename: str
    media_type: str
    size: int
    sha256: str
    revision: int = 1
    provenance: dict[str, str] = Field(default_factory=dict)
    """Where extracted fields came from: ``{"document_date": "Factur-X XML, BT-2"}``
    (custom fields as ``fields.<name>``); a field not listed came from the source
    (API 1.2)."""
    einvoice_valid: bool | None = None
    """Whether the e-invoice XML validated against its schema; None: not an
    e-invoice, or not validated (API 1.2)."""
    einvoice_errors: tuple[str, ...] = ()
    """The first validation errors when ``einvoice_valid`` is false (API 1.2)."""
    duplicate_of: str | None = None
    """The id of the document this one repeats (the same invoice from another
    source); None when it is not a duplicate (API 1.2)."""

    @property
    def sha8(self) -> str:
        """The first eight hex digits of the content hash."""
        return self.sha256[:8]

    @property
    def metadata(self) -> DocumentMetadata:
        """Only the descriptive fields, as a source would give them."""
        return DocumentMetadata.model_validate(
            self.model_dump(include=set(DocumentMetadata.model_fields))
        )
