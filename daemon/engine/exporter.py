"""Export runs: carry out an account's export plan (see :mod:`.plan`).

For each export action the intent is committed to the ledger under the
planned name (or, when another document holds it, the first free variant,
chosen and reserved in one transaction), the target writes, and the outcome
is committed. Transient failures are retried with exponential back-off and
jitter; permanent ones are rejected. A dry run turns the plan into the lines
it prints and writes nothing.
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
from typing import Any, ClassVar

from invoicesync.daemon.config.models import ExportConfig
from invoicesync.daemon.logging import get_logger
from invoicesync.daemon.naming import FoldedNames
from invoicesync.daemon.storage.ledger import NameTaken
from invoicesync.plugins.connectors import ExportItem, Target
from invoicesync.plugins.errors import ConnectorError, PermanentError, TransientError
from invoicesync.plugins.models import Document

from .bookkeeping import RunBook, RunOutcome
from .failures import report_connector_error
from .locks import Busy
from .plan import Action, ActionKind, name_choices, plan, pushed_exclusions
from .runtime import Runtime

#: After this many documents in a row failed with transient errors the run
#: stops: the target is down, and the rest stay pending for the next run.
CONSECUTIVE_FAILURES_TO_ABORT = 3


@dataclass(frozen=True)
class PlannedExport:
    """One line of ``sync --dry-run``: what would go where, and why."""

    account: str
    document_id: str
    remote_name: str
    reason: str


@dataclass
class ExportSummary(RunOutcome):
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

    failure_counts: ClassVar[tuple[str, ...]] = ("failed", "rejected")
    initial_counts: ClassVar[tuple[str, ...]] = ("exported", "failed", "rejected", "excluded")

    def detail(self) -> str:
        c = self.counts
        return f"{c['exported']} exported, {c['failed']} failed, {c['rejected']} rejected"


class _AbortRun(Exception):
    pass


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
        # portable_names: names are compared case-insensitively; the ledger
        # only knows exact names, so the run keeps the folded view itself.
        self.folded: FoldedNames | None = None
        if account.portable_names:
            self.folded = FoldedNames(
                (e.remote_name, e.document_id) for e in rt.ledger.entries(account.id)
            )
        self.consecutive_failures = 0

    # -- one action ----------------------------------------------------------

    def execute(self, action: Action) -> None:
        """Carry out one action of the plan (a dry run: record its line)."""
        document = action.document
        if action.kind is ActionKind.SKIP:
            with self.lock:
                self.summary.counts["excluded"] += 1
                self.summary.excluded_by[action.excluded_by or "?"] += 1
            return
        assert action.remote_name is not None
        if self.dry_run:
            with self.lock:
                name = action.remote_name
                if not action.keeps_name:
                    # Read-only, the same choice a real run makes when it
                    # reserves (Ledger.free_name / reserve_free).
                    free = self.rt.ledger.free_name(
                        self.account.id,
                        document.id,
                        self._choices(document, name),
                        taken=self.planned_names,
                    )
                    if free is None:
                        raise PermanentError(f"no free remote name near {name!r}")
                    name = free
                self.planned_names.add(name)
                if self.folded is not None:
                    self.folded.hold(name, document.id)
                line = PlannedExport(self.account.id, document.id, name, action.reason)
                self.summary.planned.append(line)
                self.summary.counts["planned"] += 1
            if self.on_plan:
                self.on_plan(line)
            return
        name = self.reserve(action)
        self.deliver(document, name, action.reason)

    def _choices(self, document: Document, name: str) -> Iterator[str]:
        """The names ``document`` may take, near ``name`` (see :func:`name_choices`)."""
        choices = name_choices(document, name)
        return choices if self.folded is None else self.folded.free(document.id, choices)

    def reserve(self, action: Action) -> str:
        if self.folded is None:
            return self._reserve(action)
        # Choosing by folded name and recording it must not interleave
        # between workers: two of them could take Café and CAFÉ at once.
        with self.lock:
            name = self._reserve(action)
            self.folded.hold(name, action.document.id)
            return name

    def _reserve(self, action: Action) -> str:
        document = action.document
        name = action.remote_name
        assert name is not None
        for _ in range(5):
            try:
                if action.keeps_name:
                    # The document keeps the name it already holds here.
                    self.rt.ledger.reserve(
                        self.account.id,
                        document.id,
                        document.revision,
                        document.sha256,
                        name,
                        self.rt.clock.now(),
                    )
                    return name
                # Finding a free name and recording the intent is one
                # transaction (it was a read per name tried plus a write).
                reserved = self.rt.ledger.reserve_free(
                    self.account.id,
                    document.id,
                    document.revision,
                    document.sha256,
                    self._choices(document, name),
                    self.rt.clock.now(),
                )
                if reserved is None:
                    raise PermanentError(f"no free remote name near {name!r}")
                return reserved
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
    now = rt.clock.now()
    requeued = rt.ledger.reset_for_retry(account.id, now) if requeue and not rt.dry_run else 0
    book = RunBook(rt, "export", account.id, record=not rt.dry_run)
    run_id = book.run_id
    summary = ExportSummary(account.id, run_id, requeued=requeued)
    book.start_counts(summary)
    log = get_logger(account=account.id, run_id=run_id)
    target: Target[Any] | None = None
    try:
        target = rt.make_target(account)
        run = _AccountRun(rt, account, summary, target, on_plan, now)
        if not rt.dry_run:
            # What SQL drops is never loaded; count it like a dry run does.
            pushed = pushed_exclusions(rt, account, now)
            summary.excluded_by.update(pushed)
            summary.counts["excluded"] += sum(pushed.values())
        actions = plan(rt, account, now, target.sanitize_component)
        # Unset, the account uses its target type's default (plugin API 1.3).
        workers = account.workers(getattr(target, "default_concurrency", 1))
        if workers <= 1 or rt.dry_run:
            for action in actions:
                if rt.stop.is_set():
                    summary.error = "interrupted by shutdown"
                    break
                run.execute(action)
                if progress:
                    progress(1)
        else:
            _run_concurrently(run, actions, workers, progress)
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
    book.finish(
        summary,
        log,
        extra_counts={"excluded_by": dict(summary.excluded_by)} if summary.excluded_by else None,
        dry_run=rt.dry_run,
    )
    return summary


def _run_concurrently(
    run: _AccountRun,
    actions: Iterator[Action],
    workers: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Carry out actions on ``workers`` threads, never more than 2x in flight."""
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=f"export-{run.account.id}"
    ) as pool:
        in_flight: set[Future[None]] = set()
        try:
            for action in actions:
                if run.rt.stop.is_set():
                    run.summary.error = "interrupted by shutdown"
                    break
                in_flight.add(pool.submit(run.execute, action))
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
