"""Building documents and evaluators for the restriction tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync.daemon.restrictions import Evaluator, RestrictionsConfig, compile_restrictions
from invoicesync.plugins.models import Document

BERLIN = ZoneInfo("Europe/Berlin")


def make_doc(**fields: Any) -> Document:
    """A valid document; keyword arguments override the defaults."""
    values: dict[str, Any] = {
        "id": "portal/1",
        "source": "portal",
        "external_id": "1",
        "import_date": datetime(2024, 6, 1, 10, 0, tzinfo=UTC),
        "filename": "invoice.pdf",
        "media_type": "application/pdf",
        "size": 100,
        "sha256": "ab" * 32,
    }
    values.update(fields)
    if "id" not in fields:
        values["id"] = f"{values['source']}/{values['external_id']}"
    return Document.model_validate(values)


def make_evaluator(
    restrictions: dict[str, Any] | None, tz: ZoneInfo = BERLIN, **ctx: Any
) -> Evaluator:
    """Validate ``restrictions`` as the loader would, then compile it."""
    config = (
        None
        if restrictions is None
        else RestrictionsConfig.model_validate(restrictions, context=ctx)
    )
    return compile_restrictions(config, tz)


def at(text: str, tz: ZoneInfo = BERLIN) -> datetime:
    """An aware instant from local wall-clock text, e.g. ``at("2024-03-31 23:30")``."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def document_row(doc: Document) -> dict[str, Any]:
    """The ``documents`` row the catalog would store for ``doc``."""
    return {
        "id": doc.id,
        "source": doc.source,
        "external_id": doc.external_id,
        "company": doc.company,
        "type": str(doc.type),
        "number": doc.number,
        "document_date": doc.document_date,
        "due_date": doc.due_date,
        "import_date": doc.import_date,
        "net_amount": doc.net_amount,
        "gross_amount": doc.gross_amount,
        "currency": doc.currency,
        "payment_status": str(doc.payment_status),
        "approved": doc.approved,
        "tags": sorted(doc.tags),
        "note": doc.note,
        "fields": dict(doc.fields),
        "filename": doc.filename,
        "media_type": doc.media_type,
        "size": doc.size,
        "sha256": doc.sha256,
        "revision": doc.revision,
        "fingerprint": None,
        "updated_at": doc.import_date,
    }
