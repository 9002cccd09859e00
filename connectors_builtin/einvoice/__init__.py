"""The built-in e-invoice extractor: Factur-X / ZUGFeRD / XRechnung / UBL / Peppol.

See docs/einvoices.md for what is read, from where, and the precedence.
"""

from __future__ import annotations

from invoicesync.plugins import Extractor, hookimpl

from .extractor import EInvoiceExtractor

__all__ = ["EInvoiceExtractor"]


@hookimpl
def invoicesync_register_extractors() -> list[type[Extractor]]:
    return [EInvoiceExtractor]
