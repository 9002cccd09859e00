"""Where a document's fields came from, in words (``explain``, ``documents --provenance``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from invoicesync.plugins.models import Document, DocumentMetadata

_SHOWN = (
    "type",
    "number",
    "document_date",
    "due_date",
    "company",
    "net_amount",
    "gross_amount",
    "currency",
    "payment_status",
)
_DEFAULTS = {name: f.default for name, f in DocumentMetadata.model_fields.items()}


def _text(value: object) -> str:
    if isinstance(value, date | Decimal):
        return str(value)
    return str(getattr(value, "value", value))


def field_lines(doc: Document) -> list[str]:
    """``document_date 2026-03-14 (Factur-X XML, BT-2)``, one per known field.

    A field without a provenance entry came from the source (sidecar, portal).
    """
    lines: list[str] = []
    origin = f"source {doc.source}"
    for name in _SHOWN:
        value = getattr(doc, name)
        if value is None or (value == _DEFAULTS.get(name) and name not in doc.provenance):
            continue
        lines.append(f"{name} {_text(value)} ({doc.provenance.get(name, origin)})")
    for key, value in sorted(doc.fields.items()):
        where = doc.provenance.get(f"fields.{key}", origin)
        lines.append(f"fields.{key} {value} ({where})")
    if doc.einvoice_valid is True:
        lines.append("einvoice_valid true (XSD validation)")
    elif doc.einvoice_valid is False:
        first = "; ".join(doc.einvoice_errors[:2]) or "no details"
        lines.append(f"einvoice_valid false (XSD validation: {first})")
    if doc.duplicate_of is not None:
        why = doc.provenance.get("duplicate_of", "the same invoice")
        lines.append(f"duplicate_of {doc.duplicate_of} ({why})")
    return lines


#: Must equal ``engine.extraction.GUESS_PROVENANCE`` (kept here to avoid a cycle).
GUESSED = "guessed by the source"


def stated_metadata(doc: Document) -> tuple[DocumentMetadata, frozenset[str]]:
    """The fields the source stated (those without a provenance entry, or only
    guessed by it), and the names of the guessed ones.

    What re-extraction starts from; the extracted ones are found again (or
    not), guesses may be replaced, and an ``assign_company`` rule applies again.
    """
    values: dict[str, object] = {}
    guessed = frozenset(n for n, where in doc.provenance.items() if where == GUESSED)
    for name in DocumentMetadata.model_fields:
        if name == "fields" or (name in doc.provenance and name not in guessed):
            continue
        value = getattr(doc, name)
        if value != _DEFAULTS.get(name) and not (name == "tags" and not value):
            values[name] = value
    values["fields"] = {k: v for k, v in doc.fields.items() if f"fields.{k}" not in doc.provenance}
    return DocumentMetadata.model_validate(values), guessed
