"""Re-running extractors over documents already in the catalog.

Each document is read from the blob store and goes through the same
extraction stage as at import, starting from the fields its source stated.
A changed result is a metadata update (a new ``updated_at``): the next sync
evaluates it like any metadata change, so an account whose restrictions now
match exports it. Nothing is deleted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from invoicesync.daemon.logging import get_logger
from invoicesync.daemon.storage.catalog import ImportStatus
from invoicesync.daemon.storage.schema import documents
from invoicesync.plugins.models import SourceDocument

from .extraction import log_duplicate, log_findings
from .provenance import stated_metadata
from .runtime import Runtime


def reextract(rt: Runtime, source_ids: Sequence[str] = ()) -> Counter[str]:
    """Re-extract the documents of ``source_ids`` (all configured sources if empty)."""
    config = rt.config
    wanted = list(source_ids) or [s.id for s in config.sources]
    counts: Counter[str] = Counter(updated=0, unchanged=0, failed=0)
    log = get_logger()
    for source_id in wanted:
        source_cfg = config.source(source_id)
        fingerprints = rt.catalog.fingerprints(source_id)
        for doc in rt.catalog.iter_documents(documents.c.source == source_id):
            stated, guessed = stated_metadata(doc)
            path = rt.blobs.path(doc.sha256)
            if not path.exists():
                counts["failed"] += 1
                log.error(
                    "document.failed",
                    document=doc.id,
                    stage="extract",
                    reason="content missing from the blob store",
                )
                continue
            item = SourceDocument(
                external_id=doc.external_id,
                filename=doc.filename,
                content=path,
                media_type=doc.media_type,
                metadata=stated,
                fingerprint=fingerprints.get(doc.external_id),
                guessed=guessed,
            )
            findings = rt.extraction.findings(source_cfg, item, stated)
            log_findings(log, doc.id, findings)
            item, derived = rt.extraction.apply(source_cfg, item, findings, stated)
            try:
                outcome = rt.catalog.store(source_id, item, rt.clock.now(), derived)
            except (ValueError, OSError, sa.exc.SQLAlchemyError) as exc:
                counts["failed"] += 1
                log.error("document.failed", document=doc.id, stage="extract", reason=str(exc))
                continue
            _log_outcome(log, outcome, counts)
    return counts


def _log_outcome(log: Any, outcome: Any, counts: Counter[str]) -> None:
    if outcome.status is ImportStatus.METADATA:
        counts["updated"] += 1
        log.info(
            "document.imported",
            document=outcome.document_id,
            change="metadata",
            revision=outcome.revision,
        )
    else:
        counts["unchanged"] += 1
    log_duplicate(log, outcome)
