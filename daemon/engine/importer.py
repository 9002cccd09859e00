"""Import runs: fetch a source's documents after its cursor into the catalog."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa
from invoicesync.daemon.config.models import SourceConfig
from invoicesync.daemon.logging import get_logger
from invoicesync.daemon.storage.catalog import Fingerprints, ImportStatus
from invoicesync.plugins.models import SkippedDocument, SourceDocument

from .bookkeeping import RunBook, RunOutcome
from .extraction import log_duplicate, log_findings
from .failures import describe_error, report_connector_error
from .locks import Busy
from .runtime import Runtime

_LOGGED = {
    ImportStatus.NEW: "new",
    ImportStatus.NEW_REVISION: "new_revision",
    ImportStatus.METADATA: "metadata",
}


@dataclass
class ImportSummary(RunOutcome):
    source: str
    run_id: str
    counts: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    duration_s: float = 0.0
    refetch_after: float | None = None
    """Seconds after which the source asked to be fetched again (documents it
    left for later, such as files still being written); None: nothing waits."""
    busy: str | None = None
    """Not run: another process imports this source (who, and since when)."""

    initial_counts: ClassVar[tuple[str, ...]] = (
        "new",
        "new_revision",
        "metadata",
        "unchanged",
        "failed",
    )

    @property
    def changed(self) -> bool:
        """Whether the run changed the catalog (what ``after_import`` accounts follow)."""
        return sum(self.counts[k] for k in ("new", "new_revision", "metadata")) > 0

    def detail(self) -> str:
        c = self.counts
        return f"{c['new']} new, {c['new_revision']} changed, {c['failed']} failed"


def run_import(
    rt: Runtime,
    source_cfg: SourceConfig,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Fetch ``source_cfg`` into the catalog; one transaction per document.

    The source's run lock is held throughout (see :mod:`.locks`): when
    another process imports it, the summary says so in ``busy``.
    """
    if rt.dry_run:
        return _run_import(rt, source_cfg, progress)
    try:
        lease = rt.run_lock("source", source_cfg.id, get_logger(source=source_cfg.id))
    except Busy as busy:
        return ImportSummary(source_cfg.id, "", busy=str(busy))
    with lease:
        return _run_import(rt, source_cfg, progress)


def _run_import(
    rt: Runtime,
    source_cfg: SourceConfig,
    progress: Callable[[int], None] | None,
) -> ImportSummary:
    now = rt.clock.now
    book = RunBook(rt, "import", source_cfg.id)
    run_id = book.run_id
    log = get_logger(source=source_cfg.id, run_id=run_id)
    summary = ImportSummary(source_cfg.id, run_id)
    book.start_counts(summary)
    counts = summary.counts
    source = None
    try:
        source = rt.make_source(source_cfg)
        fingerprints = rt.catalog.fingerprints(source_cfg.id)
        # The same lookup the importer trusts below (plugin API 1.3): a source
        # that finds its fingerprint unchanged need not read the document.
        source.context.known_fingerprint = fingerprints.get
        generator = source.fetch(rt.catalog.cursor(source_cfg.id))
        final_cursor: Any = None
        while True:
            if rt.stop.is_set():
                generator.close()
                summary.error = "interrupted by shutdown"
                break
            try:
                item = next(generator)
            except StopIteration as stop:
                final_cursor = stop.value
                rt.catalog.save_cursor(source_cfg.id, final_cursor, now())
                break
            if progress is not None:
                progress(1)
            _import_one(rt, source_cfg, item, fingerprints, counts, log)
    except Exception as exc:  # a bug in a plugin must not kill the daemon either
        summary.error = report_connector_error(log, exc)
    finally:
        if source is not None:
            summary.refetch_after = _refetch_after(source)
            try:
                source.close()
            except Exception as exc:
                log.warning("connector.error", error=f"close failed: {exc}")
    book.finish(summary, log)
    return summary


def _refetch_after(source: Any) -> float | None:
    """The source's ``refetch_after``, if it is a sane number of seconds."""
    value = getattr(source, "refetch_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    # A plugin asking for a re-fetch in a microsecond would spin the daemon.
    return max(float(value), 0.1)


def _import_one(
    rt: Runtime,
    source_cfg: SourceConfig,
    item: SourceDocument | SkippedDocument,
    fingerprints: Fingerprints,
    counts: Counter[str],
    log: Any,
) -> None:
    now = rt.clock.now()
    if isinstance(item, SkippedDocument):
        counts["failed"] += 1
        log.error(
            "document.failed",
            document=f"{source_cfg.id}/{item.external_id}",
            stage="import",
            reason=item.reason,
        )
        if item.cursor is not None:
            rt.catalog.save_cursor(source_cfg.id, item.cursor, now)
        return
    if item.fingerprint is not None and fingerprints.get(item.external_id) == item.fingerprint:
        counts["unchanged"] += 1
        if item.cursor is not None:
            rt.catalog.save_cursor(source_cfg.id, item.cursor, now)
        return
    doc_id = f"{source_cfg.id}/{item.external_id}"
    findings = rt.extraction.findings(source_cfg, item, item.metadata)
    log_findings(log, doc_id, findings)
    item, derived = rt.extraction.apply(source_cfg, item, findings)
    try:
        outcome = rt.catalog.store(source_cfg.id, item, now, derived)
    except (ValueError, OSError, sa.exc.IntegrityError) as exc:
        counts["failed"] += 1
        log.error(
            "document.failed",
            document=f"{source_cfg.id}/{item.external_id}",
            stage="import",
            reason=describe_error(exc) if isinstance(exc, sa.exc.SQLAlchemyError) else str(exc),
        )
        return
    counts[outcome.status.value] += 1
    log_duplicate(log, outcome)
    if outcome.status in _LOGGED:
        log.info(
            "document.imported",
            document=outcome.document_id,
            change=_LOGGED[outcome.status],
            revision=outcome.revision,
        )
        hook = rt.registry.hook.invoicesync_document_imported
        if not rt.dry_run and hook.get_hookimpls():
            # Each plugin isolated: one that raises neither breaks the import
            # nor keeps the others from hearing of it.
            rt.registry.notify(
                "invoicesync_document_imported",
                on_error=lambda plugin, exc: log.warning(
                    "plugin.hook_failed",
                    hook="invoicesync_document_imported",
                    plugin=plugin,
                    error=str(exc),
                ),
                document=rt.catalog.get(outcome.document_id),
                source_id=source_cfg.id,
                new_revision=outcome.status is not ImportStatus.METADATA,
            )
