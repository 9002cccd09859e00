"""The ``demo`` source: a sample supplier portal that needs no account.

It is the embedded default of ``config.example.yaml`` so that a first
``invoicesync sync --dry-run`` shows something real. See :mod:`.portal` for
what the documents look like.

Cursor: JSON ``{"anchor": "YYYY-MM-DD", "emitted": N, "seed": S}``. ``anchor``
is the day of the first fetch; keeping it means dates (hence content and hash)
do not drift from one fetch to the next. ``emitted`` counts the documents
handed out, so a later fetch yields only new ones (after ``count`` was
raised) and an interrupted fetch resumes from the last stored document's
checkpoint.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from invoicesync.plugins import (
    ConnectorError,
    ConnectorOptions,
    FetchResult,
    SkippedDocument,
    Source,
    SourceDocument,
)
from pydantic import Field

from .portal import generate

__all__ = ["DemoOptions", "DemoSource"]

MAX_COUNT = 1_000_000


class DemoOptions(ConnectorOptions):
    """Options of the ``demo`` source."""

    count: int = Field(default=50, ge=0, le=MAX_COUNT, description="How many documents.")
    seed: int = Field(
        default=42,
        ge=0,
        le=2**63 - 1,
        description="Which sample: the same seed gives the same documents.",
    )


class DemoSource(Source[DemoOptions]):
    """A deterministic sample supplier portal (several companies, small real PDFs)."""

    type_name = "demo"
    Options = DemoOptions
    description = "Deterministic sample supplier portal with small real PDF invoices"
    batch_commit = True  # nothing happens after a yield: group commit is safe

    def fetch(self, cursor: str | None) -> FetchResult:
        """Yield documents ``emitted .. count-1``; return the advanced cursor."""
        if cursor is None:
            anchor = self.context.now().date()
            emitted = 0
        else:
            anchor, emitted, seed = _parse_cursor(cursor)
            if seed != self.options.seed:
                # A different seed is a different portal: hand out its
                # documents from the start (same ids, new content revisions).
                emitted = 0
        seed = self.options.seed
        for index in range(emitted, self.options.count):
            if self.context.stop.is_set():
                # Stop between documents; each one already carried its
                # checkpoint, so the next fetch resumes right here.
                break
            try:
                doc = generate(index, seed, anchor)
            except Exception as exc:
                # One document that cannot be made (a date beyond the
                # calendar under an extreme --now, a bug) is that document's
                # failure; the others still come.
                yield SkippedDocument(
                    external_id=f"inv-{index + 1:06d}",
                    reason=f"cannot generate: {type(exc).__name__}: {exc}",
                    cursor=_format_cursor(anchor, index + 1, seed),
                )
                emitted = index + 1
                continue
            yield SourceDocument(
                external_id=doc.external_id,
                filename=doc.filename,
                content=doc.content,
                media_type="application/pdf",
                metadata=doc.metadata,
                cursor=_format_cursor(anchor, index + 1, seed),
            )
            emitted = index + 1
        return _format_cursor(anchor, emitted, seed)


def _format_cursor(anchor: date, emitted: int, seed: int) -> str:
    # Hand-formatted (every value is a number or an ISO date, nothing to
    # escape): json.dumps per document was a noticeable share of a fetch.
    return f'{{"anchor": "{anchor.isoformat()}", "emitted": {emitted}, "seed": {seed}}}'


def _parse_cursor(cursor: str) -> tuple[date, int, int]:
    """Read a cursor this source wrote; anything else is a clear error.

    A damaged cursor is not silently replaced: a new anchor day would shift
    every document date and re-import all documents as new revisions.
    """
    try:
        data: Any = json.loads(cursor)
        anchor = date.fromisoformat(data["anchor"])
        emitted = data["emitted"]
        seed = data.get("seed", 42)
        if not isinstance(emitted, int) or isinstance(emitted, bool) or emitted < 0:
            raise ValueError("emitted must be a non-negative integer")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError("seed must be an integer")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConnectorError(
            f"demo source: stored cursor is not one this source wrote ({exc}); "
            "reset the source's state to start over"
        ) from None
    return anchor, emitted, seed
