"""The restriction checks shipped with invoicesync, registered as a plugin.

Every built-in attribute check -- ``types``, ``tags``, ``payment_status``,
``approved``, ``gross_amount``, ``currencies``, ``fields`` (SPEC section 2),
``filename`` and ``einvoice_valid`` -- goes through ``invoicesync_register_checks``,
exactly the hook a third-party plugin implements, so there is one model of a check. The
``origins`` and ``period`` restrictions are not attribute checks: they are
part of the evaluator and pushed down into SQL.
"""

from __future__ import annotations

from invoicesync.plugins import AttributeCheck, hookimpl

from .attributes import (
    ApprovedCheck,
    CurrenciesCheck,
    FieldsCheck,
    GrossAmountCheck,
    PaymentStatusCheck,
    TagsCheck,
    TypesCheck,
)
from .einvoice import EInvoiceValidCheck, EInvoiceValidOptions
from .filename import FilenameCheck

__all__ = [
    "BUILTIN_CHECKS",
    "ApprovedCheck",
    "CurrenciesCheck",
    "EInvoiceValidCheck",
    "EInvoiceValidOptions",
    "FieldsCheck",
    "FilenameCheck",
    "GrossAmountCheck",
    "PaymentStatusCheck",
    "TagsCheck",
    "TypesCheck",
]

#: In the order their checks appear in ``explain``: the document attributes
#: of SPEC section 2 first (the order of the ``attributes:`` keys there).
BUILTIN_CHECKS: tuple[type[AttributeCheck], ...] = (
    TypesCheck,
    TagsCheck,
    PaymentStatusCheck,
    ApprovedCheck,
    GrossAmountCheck,
    CurrenciesCheck,
    FieldsCheck,
    FilenameCheck,
    EInvoiceValidCheck,
)


@hookimpl
def invoicesync_register_checks() -> list[type[AttributeCheck]]:
    """The built-in attribute checks."""
    return list(BUILTIN_CHECKS)
