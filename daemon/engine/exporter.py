"""Export runs: decide, name, and deliver eligible documents to one account.

For each candidate (see ``Ledger.candidate_condition``) the restriction
evaluator decides; an eligible document gets a remote name (the one it already
holds in this account, else a fresh one from the template, with ``_{sha8}``
when another document holds that name), the intent is committed to the ledger,
the target writes, and the outcome is committed. Transient failures are
retried with exponential back-off and jitter; permanent ones are rejected.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from invoicesync.daemon.config.models import ExportConfig, OnUpdate
from invoicesync.daemon.logging import get_logger
from invoicesync.daemon.naming import sanitize_component, with_suffix_before_extension
from invoicesync.daemon.storage.catalog import row_to_document
from invoicesync.daemon.storage.ledger import LedgerState, NameTaken
from invoicesync.daemon.storage.schema import documents, ledger
from invoicesync.plugins.connectors import ExportItem, Target
from invoicesync.plugins.errors import ConnectorError, PermanentError, TransientError
from invoicesync.plugins.models import Document

from .failures import report_connector_error
from .locks import Busy
from .runtime import Runtime

#: After this many documents in a row failed with transient errors the run
#: stops: the target is down, and the rest stay pending for the next run.
CONSECUTIVE_FAILURES_TO_ABORT = 3
BATCH = 500


@dataclass(frozen=True)
class Candidate:
    document: Document
    state: LedgerState | None
    remote_name: str | None
    exported_sha256: str | None


@dataclass(frozen=True)
class PlannedExport:
    """One line of ``sync --dry-run``: what would go where, and why."""

    account: str
    document_id: str
    remote_name: str
    reason: str


@dataclass
class ExportSummary:
    account: str
    run_id: str
    counts: Counter[str] = field(default_factory=Counter)
    excluded_by: Counter[str] = field(default_factory=Counter)
    planned: list[PlannedExport] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    busy: str | None = None
    """Not run: another process exports to this account (who, and since when)."""
    requeued: int = 0
    """Failed and rejected documents put back in line first (``retry``)."""

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.busy is None
            and not self.counts["failed"]
            and not self.counts["rejected"]
        )


class _AbortRun(Exception):
    pass


def action_reason(candidate: Candidate) -> str:
    """Why a candidate is (re-)exported, for logs and dry-run lines."""
    if candidate.state is None:
        return "new"
    if candidate.state is LedgerState.EXPORTING:
        return "resume interrupted export"
    if candidate.state is LedgerState.FAILED:
        return "retry after failure"
    return f"content changed (revision {candidate.document.revision})"


def _candidate_filter(
    rt: Runtime, account: ExportConfig, now: datetime
) -> tuple[sa.FromClause, sa.ColumnElement[bool]]:
    """The FROM and WHERE of the candidates a run iterates."""
    joined, condition = rt.ledger.candidate_condition(
        account.id, now, include_changed=account.on_update is OnUpdate.EXPORT
    )
    # A dry run evaluates every candidate in Python so that its summary can
    # say which check excluded how many; real runs let SQL drop the documents
    # that origins and period exclude (same verdicts, far fewer rows).
    pushed = None if rt.dry_run else rt.evaluators[account.id].sql_filter(documents, now)
    if pushed is not None:
        condition = sa.and_(condition, pushed)
    return joined, condition


def count_candidates(rt: Runtime, account: ExportConfig, now: datetime) -> int:
    """How many candidates :func:`iter_candidates` yields now (a progress bar's total)."""
    joined, condition = _candidate_filter(rt, account, now)
    with rt.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(joined).where(condition)).scalar()
            or 0
        )


def iter_candidates(rt: Runtime, account: ExportConfig, now: datetime) -> Iterator[Candidate]:
    """Documents that may need exporting, in id order, fetched in batches."""
    joined, condition = _candidate_filter(rt, account, now)
    columns = [
        *documents.c,
        ledger.c.state.label("ledger_state"),
        ledger.c.remote_name.label("ledger_remote_name"),
        ledger.c.exported_sha256.label("ledger_exported_sha256"),
    ]
    last: str | None = None
    while True:
        query = (
            sa.select(*columns)
            .select_from(joined)
            .where(condition)
            .order_by(documents.c.id)
            .limit(BATCH)
        )
        if last is not None:
            query = query.where(documents.c.id > last)
        with rt.engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            mapping = dict(row._mapping)
            state = mapping.pop("ledger_state")
            remote_name = mapping.pop("ledger_remote_name")
            exported = mapping.pop("ledger_exported_sha256")
            yield Candidate(
                row_to_document(_Row(mapping)),
                LedgerState(state) if state else None,
                remote_name,
                exported,
            )
        if len(rows) < BATCH:
            return
        last = rows[-1].id


def count_pushed_exclusions(rt: Runtime, account: ExportConfig, now: datetime) -> Counter[str]:
    """Candidates a real run's SQL pre-filter drops, counted per deciding check.

    The same counts a dry run gets by evaluating every candidate, from one
    aggregate query: a document is counted under the first check whose clause
    it fails (a NULL verdict fails, as in the WHERE clause).
    """
    filters = rt.evaluators[account.id].sql_filters(documents, now)
    if not filters:
        return Counter()
    joined, condition = rt.ledger.candidate_condition(
        account.id, now, include_changed=account.on_update is OnUpdate.EXPORT
    )
    sums = []
    for i, (_name, clause) in enumerate(filters):
        passed_before = [c for _n, c in filters[:i]]
        fails_here = sa.case((clause, 0), else_=1)
        if passed_before:
            fails_here = sa.case((sa.and_(*passed_before), fails_here), else_=0)
        sums.append(sa.func.coalesce(sa.func.sum(fails_here), 0))
    with rt.engine.connect() as conn:
        row = conn.execute(sa.select(*sums).select_from(joined).where(condition)).one()
    return Counter({name: int(n) for (name, _c), n in zip(filters, row, strict=True) if n})


class _Row:
    """Adapter so ``row_to_document`` accepts a plain mapping."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping


class _AccountRun:
    """State of one export run for one account."""

    def __init__(
        self,
        rt: Runtime,
        account: ExportConfig,
        summary: ExportSummary,
        target: Target[Any],
        on_plan: Callable[[PlannedExport], None] | None,
        now: datetime,
    ) -> None:
        self.now = now
        self.rt = rt
        self.account = account
        self.summary = summary
        self.target = target
        self.dry_run = rt.dry_run
        self.on_plan = on_plan
        self.log = get_logger(account=account.id, run_id=summary.run_id)
        self.lock = threading.Lock()
        self.planned_names: set[str] = set()
        self.consecutive_failures = 0

    # -- naming ----------------------------------------------------------------

    def fresh_name(self, document: Document) -> str:
        rendered = self.rt.templates[self.account.id].render(document, self.rt.config.tz)
        return "/".join(
            sanitize_component(self.target.sanitize_component(part)) for part in rendered.split("/")
        )

    @staticmethod
    def name_choices(document: Document, base: str) -> Iterator[str]:
        """``base``, then ``base`` with ``_{sha8}``, then ``_{sha8}-2`` ... ``-99``."""
        yield base
        yield with_suffix_before_extension(base, f"_{document.sha8}")
        for n in range(2, 100):
            yield with_suffix_before_extension(base, f"_{document.sha8}-{n}")

    def free_name(self, document: Document, base: str) -> str:
        """The first of :meth:`name_choices` no other document holds (dry runs)."""
        for name in self.name_choices(document, base):
            holder = self.rt.ledger.name_holder(self.account.id, name)
            if holder in (None, document.id) and (name not in self.planned_names):
                return name
        raise PermanentError(f"no free remote name near {base!r}")

    # -- one document ----------------------------------------------------------

    def process(self, candidate: Candidate) -> None:
        document = candidate.document
        # The run's one evaluation time, the same the SQL pre-filter used: a
        # run that crosses midnight must not judge documents by two days.
        decision = self.rt.evaluators[self.account.id].evaluate(document, self.now)
        if not decision.export:
            deciding = decision.deciding
            with self.lock:
                self.summary.counts["excluded"] += 1
                self.summary.excluded_by[deciding.name if deciding else "?"] += 1
            return
        reason = f"{action_reason(candidate)}; {decision.summary}"
        if self.dry_run:
            with self.lock:
                name = candidate.remote_name or self.free_name(document, self.fresh_name(document))
                self.planned_names.add(name)
                plan = PlannedExport(self.account.id, document.id, name, reason)
                self.summary.planned.append(plan)
                self.summary.counts["planned"] += 1
            if self.on_plan:
                self.on_plan(plan)
            return
        name = self.reserve(candidate)
        self.deliver(document, name, reason)

    def reserve(self, candidate: Candidate) -> str:
        document = candidate.document
        for _ in range(5):
            try:
                if candidate.remote_name:
                    # The document keeps the name it already holds here.
                    self.rt.ledger.reserve(
                        self.account.id,
                        document.id,
                        document.revision,
                        document.sha256,
                        candidate.remote_name,
                        self.rt.clock.now(),
                    )
                    return candidate.remote_name
                base = self.fresh_name(document)
                # Finding a free name and recording the intent is one
                # transaction (it was a read per name tried plus a write).
                name = self.rt.ledger.reserve_free(
                    self.account.id,
                    document.id,
                    document.revision,
                    document.sha256,
                    self.name_choices(document, base),
                    self.rt.clock.now(),
                )
                if name is None:
                    raise PermanentError(f"no free remote name near {base!r}")
                return name
            except NameTaken:
                # Another worker took the name between our check and our insert.
                continue
        raise PermanentError(f"could not reserve a remote name for {document.id}")

    def deliver(self, document: Document, name: str, reason: str) -> None:
        retry = self.account.retry
        item = ExportItem(document, name, self.rt.blobs.path(document.sha256))
        log = self.log.bind(document=document.id, remote_name=name)
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                result = self.target.export(item)
            except PermanentError as exc:
                self._rejected(document, str(exc), attempt, log)
                return
            except TransientError as exc:
                if self.rt.stop.is_set():
                    self._abandoned(document, str(exc), attempt, log)
                    return
                if attempt < retry.attempts:
                    delay = backoff(attempt, retry.initial, retry.max, exc.retry_after)
                    log.info(
                        "document.retrying",
                        attempt=attempt,
                        delay_s=round(delay, 2),
                        error=str(exc),
                    )
                    if not self.rt.stop.wait(delay):
                        continue
                    self._abandoned(document, str(exc), attempt, log)
                    return
                self._failed(document, str(exc), attempt, log)
                return
            except ConnectorError as exc:
                self._failed(document, str(exc), attempt, log)
                return
            except Exception as exc:  # a bug in a plugin: record it, keep going
                self._failed(
                    document,
                    f"{type(exc).__name__}: {exc}",
                    attempt,
                    log,
                    traceback=traceback.format_exc(limit=5),
                )
                return
            break
        now = self.rt.clock.now()
        self.rt.ledger.mark_exported(
            self.account.id, document.id, document.sha256, result.remote_ref, now
        )
        with self.lock:
            self.summary.counts["exported"] += 1
            self.consecutive_failures = 0
        log.info(
            "document.exported",
            remote_ref=result.remote_ref,
            revision=document.revision,
            size=document.size,
            reason=reason,
            duration_s=round(time.monotonic() - started, 3),
        )
        hook = self.rt.registry.hook.invoicesync_document_exported
        if hook.get_hookimpls():
            self.rt.registry.notify(
                "invoicesync_document_exported",
                on_error=lambda plugin, exc: log.warning(
                    "plugin.hook_failed",
                    hook="invoicesync_document_exported",
                    plugin=plugin,
                    error=str(exc),
                ),
                document=document,
                account_id=self.account.id,
                remote_name=name,
                remote_ref=result.remote_ref,
            )

    def _failed(
        self, document: Document, error: str, attempts: int, log: Any, **extra: Any
    ) -> None:
        now = self.rt.clock.now()
        next_at = now + self.account.retry.max
        self.rt.ledger.mark_failed(self.account.id, document.id, error, attempts, next_at, now)
        log.error(
            "document.failed",
            stage="export",
            error=error,
            attempts=attempts,
            next_attempt_at=next_at.isoformat(),
            **extra,
        )
        with self.lock:
            self.summary.counts["failed"] += 1
            self.consecutive_failures += 1
            abort = self.consecutive_failures >= CONSECUTIVE_FAILURES_TO_ABORT
        if abort:
            raise _AbortRun(f"{self.consecutive_failures} documents in a row failed: {error}")

    def _abandoned(self, document: Document, error: str, attempts: int, log: Any) -> None:
        # Shutting down: the ledger keeps the "exporting" intent, so the next
        # start exports this document again under the same remote name (the
        # target replaces idempotently) instead of waiting out a back-off.
        log.warning("document.abandoned", error=error, attempts=attempts)
        with self.lock:
            self.summary.counts["abandoned"] += 1

    def _rejected(self, document: Document, reason: str, attempts: int, log: Any) -> None:
        self.rt.ledger.mark_rejected(
            self.account.id, document.id, reason, attempts, self.rt.clock.now()
        )
        log.error("document.rejected", reason=reason)
        with self.lock:
            self.summary.counts["rejected"] += 1


def backoff(
    attempt: int, initial: timedelta, maximum: timedelta, retry_after: float | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, "equal jitter".

    Half the exponential delay is fixed and half random, so retries of many
    documents spread out but never come back sooner than half the schedule. A
    server's ``Retry-After`` is a floor.
    """
    base = min(maximum.total_seconds(), initial.total_seconds() * 2 ** (attempt - 1))
    delay = base / 2 + random.uniform(0, base / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, maximum.total_seconds()))
    return delay


def run_export(
    rt: Runtime,
    account: ExportConfig,
    *,
    on_plan: Callable[[PlannedExport], None] | None = None,
    progress: Callable[[int], None] | None = None,
    requeue: bool = False,
) -> ExportSummary:
    """Export everything eligible and not yet exported to ``account``.

    The account's run lock is held throughout (see :mod:`.locks`): when
    another process exports to it, the summary says so in ``busy``.
    ``requeue`` (``invoicesync retry``) first puts failed and rejected
    documents back in line, under the same lock.
    """
    if rt.dry_run:
        return _run_export(rt, account, on_plan, progress, requeue)
    try:
        lease = rt.run_lock("account", account.id, get_logger(account=account.id))
    except Busy as busy:
        return ExportSummary(account.id, "", busy=str(busy))
    with lease:
        return _run_export(rt, account, on_plan, progress, requeue)


def _run_export(
    rt: Runtime,
    account: ExportConfig,
    on_plan: Callable[[PlannedExport], None] | None,
    progress: Callable[[int], None] | None,
    requeue: bool,
) -> ExportSummary:
    started = time.monotonic()
    now = rt.clock.now()
    requeued = rt.ledger.reset_for_retry(account.id, now) if requeue and not rt.dry_run else 0
    run_id = rt.runs.start("export", account.id, now) if not rt.dry_run else "dry-run"
    summary = ExportSummary(account.id, run_id, requeued=requeued)
    for key in ("exported", "failed", "rejected", "excluded"):
        summary.counts[key] = 0
    log = get_logger(account=account.id, run_id=run_id)
    target: Target[Any] | None = None
    try:
        target = rt.make_target(account)
        run = _AccountRun(rt, account, summary, target, on_plan, now)
        if not rt.dry_run:
            # What SQL drops is never loaded; count it like a dry run does.
            pushed = count_pushed_exclusions(rt, account, now)
            summary.excluded_by.update(pushed)
            summary.counts["excluded"] += sum(pushed.values())
        candidates = iter_candidates(rt, account, now)
        if account.concurrency <= 1 or rt.dry_run:
            for candidate in candidates:
                if rt.stop.is_set():
                    summary.error = "interrupted by shutdown"
                    break
                run.process(candidate)
                if progress:
                    progress(1)
        else:
            _run_concurrently(run, candidates, account.concurrency, progress)
    except _AbortRun as exc:
        summary.error = str(exc)
        log.error("connector.error", error=str(exc), transient=True)
    except Exception as exc:
        summary.error = report_connector_error(log, exc)
    finally:
        if target is not None:
            try:
                target.close()
            except Exception as exc:
                log.warning("connector.error", error=f"close failed: {exc}")
    summary.duration_s = round(time.monotonic() - started, 3)
    counts: dict[str, Any] = dict(summary.counts)
    if summary.excluded_by:
        counts["excluded_by"] = dict(summary.excluded_by)
    status = "ok" if summary.ok else ("failed" if summary.error else "partial")
    if not rt.dry_run:
        rt.runs.finish(run_id, status, counts, rt.clock.now(), summary.error)
    log.info(
        "export.finished",
        status=status,
        duration_s=summary.duration_s,
        error=summary.error,
        dry_run=rt.dry_run,
        **counts,
    )
    return summary


def _run_concurrently(
    run: _AccountRun,
    candidates: Iterator[Candidate],
    workers: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Process candidates on ``workers`` threads, never more than 2x in flight."""
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=f"export-{run.account.id}"
    ) as pool:
        in_flight: set[Future[None]] = set()
        try:
            for candidate in candidates:
                if run.rt.stop.is_set():
                    run.summary.error = "interrupted by shutdown"
                    break
                in_flight.add(pool.submit(run.process, candidate))
                if len(in_flight) >= workers * 2:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                        if progress:
                            progress(1)
        finally:
            done, _ = wait(in_flight)
        for future in done:
            future.result()
            if progress:
                progress(1)
