"""Attribute checks shipped with invoicesync, registered through the plugin hook.

They use exactly the hook third-party plugins use (``invoicesync_register_checks``),
so this module doubles as the example of writing one::

    attributes:
      filename: {glob: ["*.pdf", "*.xml"]}        # case-insensitive by default
      filename: {glob: "RE-*.pdf", case_sensitive: true}
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, ClassVar

from invoicesync.plugins.checks import AttributeCheck, CheckOutcome
from invoicesync.plugins.hookspecs import hookimpl
from invoicesync.plugins.models import Document
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

__all__ = ["BUILTIN_CHECKS", "EInvoiceValidCheck", "FilenameCheck"]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class FilenameOptions(BaseModel):
    """``filename: {glob: PATTERN | [PATTERN, ...], case_sensitive: false}``."""

    model_config = ConfigDict(extra="forbid")

    glob: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_one_or_many)] = (
        Field(min_length=1, description="shell-style patterns (*, ?, [abc]); any may match")
    )
    case_sensitive: bool = False


class FilenameCheck(AttributeCheck):
    """The document's original file name matches one of the glob patterns."""

    key: ClassVar[str] = "filename"
    Options: ClassVar[type[BaseModel]] = FilenameOptions
    description: ClassVar[str] = "original file name matches a glob pattern"

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        assert isinstance(options, FilenameOptions)
        self.patterns = list(options.glob)
        flags = 0 if options.case_sensitive else re.IGNORECASE
        # One compiled alternation: fnmatch.translate anchors each pattern.
        self._regex = re.compile(
            "|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns), flags
        )

    def evaluate(self, document: Document) -> CheckOutcome:
        passed = self._regex.match(document.filename) is not None
        shown = ", ".join(self.patterns)
        verb = "matches" if passed else "does not match"
        return CheckOutcome(passed, f"file name {document.filename!r} {verb} {shown}")


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


BUILTIN_CHECKS: tuple[type[AttributeCheck], ...] = (FilenameCheck, EInvoiceValidCheck)


@hookimpl
def invoicesync_register_checks() -> list[type[AttributeCheck]]:
    """The built-in attribute checks."""
    return list(BUILTIN_CHECKS)
