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
from invoicesync.daemon.storage import catalog
from invoicesync.daemon.storage.catalog import (
    DOCUMENT_ERRORS,
    Fingerprints,
    ImportOutcome,
    ImportStatus,
)
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
    """Fetch ``source_cfg`` into the catalog, documents committed in batches
    (group commit: one durability barrier and one transaction per batch) when
    the source allows it (``Source.batch_commit``), else one by one.

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
    book = RunBook(rt, "import", source_cfg.id)
    run_id = book.run_id
    log = get_logger(source=source_cfg.id, run_id=run_id)
    summary = ImportSummary(source_cfg.id, run_id)
    book.start_counts(summary)
    batch: _Batch | None = None
    source = None
    try:
        source = rt.make_source(source_cfg)
        batch = _Batch(rt, source_cfg, summary.counts, log, grouped=_batch_commit(source))
        fingerprints = rt.catalog.fingerprints(source_cfg.id)
        # The same lookup the importer trusts below (plugin API 1.3): a source
        # that finds its fingerprint unchanged need not read the document.
        source.context.known_fingerprint = fingerprints.get
        generator = source.fetch(rt.catalog.cursor(source_cfg.id))
        while True:
            if rt.stop.is_set():
                generator.close()
                summary.error = "interrupted by shutdown"
                break
            try:
                item = next(generator)
            except StopIteration as stop:
                batch.checkpoint(stop.value)  # the source's final cursor
                break
            if progress is not None:
                progress(1)
            batch.add(item, fingerprints)
            if batch.full:
                batch.flush()
    except Exception as exc:  # a bug in a plugin must not kill the daemon either
        summary.error = report_connector_error(log, exc)
    finally:
        try:
            # What the source yielded before it stopped (or failed) is kept.
            if batch is not None:
                batch.flush()
        except Exception as exc:
            summary.error = summary.error or report_connector_error(log, exc)
        if source is not None:
            summary.refetch_after = _refetch_after(source)
            try:
                source.close()
            except Exception as exc:
                log.warning("connector.error", error=f"close failed: {exc}")
    book.finish(summary, log)
    return summary


def _batch_commit(source: Any) -> bool:
    """Whether the source lets documents be committed in batches (API 1.3)."""
    return getattr(source, "batch_commit", False) is True


def _refetch_after(source: Any) -> float | None:
    """The source's ``refetch_after``, if it is a sane number of seconds."""
    value = getattr(source, "refetch_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    # A plugin asking for a re-fetch in a microsecond would spin the daemon.
    return max(float(value), 0.1)


class _Batch:
    """One source's documents on their way into the catalog, committed in
    groups (:class:`~invoicesync.daemon.storage.catalog.ImportBatch`).

    Events and counts are those of one document at a time, in the order the
    source yielded them; they are logged once the batch is committed (a
    ``document.imported`` is only ever said of a committed document).
    """

    def __init__(
        self,
        rt: Runtime,
        source_cfg: SourceConfig,
        counts: Counter[str],
        log: Any,
        *,
        grouped: bool,
    ) -> None:
        self.rt = rt
        self.source_cfg = source_cfg
        self.counts = counts
        self.log = log
        # A source that acts after a yield (moving a mail) gets each document
        # committed before it is resumed: batches of one.
        self.limit = catalog.BATCH_DOCUMENTS if grouped else 1
        self.commit = rt.catalog.batch(source_cfg.id, documents=self.limit)
        # What to report per item, in order: ("failed", (document, reason)),
        # ("unchanged", None) or ("stored", document) (its outcome from the commit).
        self.reports: list[tuple[str, Any]] = []

    @property
    def full(self) -> bool:
        # Reports count too: a re-sync of unchanged documents stays bounded.
        return self.commit.full or len(self.reports) >= self.limit

    def checkpoint(self, cursor: str | None) -> None:
        """The source's final cursor, committed with the last documents."""
        self.commit.checkpoint(cursor, self.rt.clock.now())
        self.flush()

    def add(self, item: SourceDocument | SkippedDocument, fingerprints: Fingerprints) -> None:
        rt, source_cfg = self.rt, self.source_cfg
        now = rt.clock.now()
        if isinstance(item, SkippedDocument):
            self.reports.append(("failed", (f"{source_cfg.id}/{item.external_id}", item.reason)))
            if item.cursor is not None:
                self.commit.checkpoint(item.cursor, now)
            return
        if item.fingerprint is not None and fingerprints.get(item.external_id) == item.fingerprint:
            self.reports.append(("unchanged", None))
            if item.cursor is not None:
                self.commit.checkpoint(item.cursor, now)
            return
        doc_id = f"{source_cfg.id}/{item.external_id}"
        findings = rt.extraction.findings(source_cfg, item, item.metadata)
        log_findings(self.log, doc_id, findings)
        item, derived = rt.extraction.apply(source_cfg, item, findings)
        try:
            self.commit.add(item, now, derived)
        except DOCUMENT_ERRORS as exc:
            self.reports.append(("failed", (doc_id, _reason(exc))))
            return
        self.reports.append(("stored", doc_id))

    def flush(self) -> None:
        """Commit what was added; report each item."""
        reports, self.reports = self.reports, []
        outcomes = iter(self.commit.commit() if len(self.commit) else [])
        for kind, detail in reports:
            if kind == "stored":
                outcome = next(outcomes)
                if isinstance(outcome, Exception):
                    kind, detail = "failed", (detail, _reason(outcome))
                else:
                    self._imported(outcome)
                    continue
            if kind == "failed":
                self.counts["failed"] += 1
                self.log.error(
                    "document.failed", document=detail[0], stage="import", reason=detail[1]
                )
            else:
                self.counts["unchanged"] += 1

    def _imported(self, outcome: ImportOutcome) -> None:
        rt, log = self.rt, self.log
        self.counts[outcome.status.value] += 1
        log_duplicate(log, outcome)
        if outcome.status not in _LOGGED:
            return
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
                source_id=self.source_cfg.id,
                new_revision=outcome.status is not ImportStatus.METADATA,
            )


def _reason(exc: Exception) -> str:
    return describe_error(exc) if isinstance(exc, sa.exc.SQLAlchemyError) else str(exc)
