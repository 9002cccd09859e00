"""``einvoice_valid``: the e-invoice XML validated against its schema (XSD)."""

from __future__ import annotations

from typing import ClassVar

from invoicesync.plugins import AttributeCheck, CheckOutcome, Document
from pydantic import BaseModel, RootModel


class EInvoiceValidOptions(RootModel[bool]):
    """``einvoice_valid: true`` (only valid e-invoices) or ``false`` (only the others)."""


class EInvoiceValidCheck(AttributeCheck):
    """The document is an e-invoice whose XML validated against its schema (XSD).

    ``true`` passes only documents whose XML validated; documents that are not
    e-invoices (or were never validated) fail it, like any missing attribute.
    ``false`` passes the rest: invalid e-invoices and documents that are none.
    """

    key: ClassVar[str] = "einvoice_valid"
    Options: ClassVar[type[BaseModel]] = EInvoiceValidOptions
    description: ClassVar[str] = "the e-invoice XML validated against its schema (XSD)"

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        assert isinstance(options, EInvoiceValidOptions)
        self.wanted = options.root

    def evaluate(self, document: Document) -> CheckOutcome:
        valid = document.einvoice_valid
        if valid is None:
            state = "not a validated e-invoice"
        elif valid:
            state = "a valid e-invoice (XSD)"
        else:
            first = document.einvoice_errors[0] if document.einvoice_errors else "no details"
            state = f"an invalid e-invoice ({first})"
        passed = (valid is True) is self.wanted
        wanted = "a valid e-invoice" if self.wanted else "no valid e-invoice"
        return CheckOutcome(passed, f"{state}; the account wants {wanted}")
