"""Export runs: carry out an account's export plan (see :mod:`.plan`).

Export actions go in batches (group commit, :data:`BATCH_SIZE`): the intents
of a batch are committed to the ledger in one transaction, each under the
planned name (or, when another document holds it, the first free variant);
then the target writes the documents (on ``concurrency`` worker threads);
the outcomes are collected and, for a target that defers durability
(:attr:`Target.defers_durability`), one :meth:`Target.barrier` makes the
batch's documents durable; only then are the outcomes committed in one more
transaction, and only then are ``document.exported`` logged and the
``invoicesync_document_exported`` hook called. A batch's outcomes are
committed at the latest :data:`BATCH_SECONDS` after the first of them
arrived, so a slow target's ledger and events do not lag.

A crash anywhere converges: a document whose intent is committed but not its
outcome is exported again under the same name (targets overwrite
idempotently), never under a second name. Transient failures are retried
with exponential back-off and jitter; permanent ones are rejected. A dry run
turns the plan into the lines it prints and writes nothing.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from invoicesync.daemon.config.models import ExportConfig
from invoicesync.daemon.logging import get_logger
from invoicesync.daemon.naming import FoldedNames
from invoicesync.daemon.storage.ledger import Exported, LedgerTransaction, NameTaken
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

#: Documents per group commit: one transaction for their intents, one
#: durability barrier and one transaction for their outcomes.
BATCH_SIZE = 256
#: A batch's outcomes are committed at the latest this many seconds after
#: the first of them arrived (a slow target fills a batch slowly).
BATCH_SECONDS = 1.0


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
        self.abort: str | None = None
        """Why the run stops taking documents (too many failures in a row)."""

    # -- planning only (dry run) and skips -----------------------------------

    def execute(self, action: Action) -> None:
        """Record a skip, or (dry run) the line a real run would carry out."""
        document = action.document
        if action.kind is ActionKind.SKIP:
            with self.lock:
                self.summary.counts["excluded"] += 1
                self.summary.excluded_by[action.excluded_by or "?"] += 1
            return
        assert action.remote_name is not None
        assert self.dry_run, "real exports go through run_batches"
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

    def _choices(self, document: Document, name: str) -> Iterator[str]:
        """The names ``document`` may take, near ``name`` (see :func:`name_choices`)."""
        choices = name_choices(document, name)
        return choices if self.folded is None else self.folded.free(document.id, choices)

    # -- reservations ----------------------------------------------------------

    def reserve_batch(self, actions: list[Action]) -> list[tuple[Action, str]]:
        """Commit the intents of ``actions`` in one transaction; their names.

        Falls back to one transaction per document (with retries) if a name
        turned out taken meanwhile: the batch's transaction is then undone
        as a whole. Only the run's main thread reserves.
        """
        try:
            with self.rt.ledger.transaction() as tx:
                # Who holds the planned names, in one query instead of one each.
                tx.prefetch_holders(
                    self.account.id,
                    [a.remote_name for a in actions if a.remote_name and not a.keeps_name],
                )
                return [(action, self._reserve(action, tx)) for action in actions]
        except NameTaken:
            # (A folded name held for the undone batch stays held: at worst
            # a later document takes a variant of a name that was free.)
            return [(action, self.reserve(action)) for action in actions]

    def reserve(self, action: Action) -> str:
        """Reserve one document's name in a transaction of its own."""
        for _ in range(5):
            try:
                with self.rt.ledger.transaction() as tx:
                    return self._reserve(action, tx)
            except NameTaken:
                # Another writer took the name between our check and our insert.
                continue
        raise PermanentError(f"could not reserve a remote name for {action.document.id}")

    def _reserve(self, action: Action, tx: LedgerTransaction) -> str:
        document = action.document
        name = action.remote_name
        assert name is not None
        new = action.candidate.state is None  # no ledger row yet: insert only
        if action.keeps_name:
            # The document keeps the name it already holds here.
            tx.reserve(
                self.account.id,
                document.id,
                document.revision,
                document.sha256,
                name,
                self.rt.clock.now(),
                new=new,
                holds=action.candidate.remote_name,
            )
        else:
            # Finding a free name and recording the intent happen in the same
            # transaction (it was a read per name tried plus a write).
            reserved = tx.reserve_free(
                self.account.id,
                document.id,
                document.revision,
                document.sha256,
                self._choices(document, name),
                self.rt.clock.now(),
                new=new,
                holds=action.candidate.remote_name,
            )
            if reserved is None:
                raise PermanentError(f"no free remote name near {name!r}")
            name = reserved
        if self.folded is not None:
            # Later documents of the same batch must see this choice.
            self.folded.hold(name, document.id)
        return name

    # -- delivery (worker threads) ---------------------------------------------

    def deliver(self, action: Action, name: str) -> _Outcome:
        """Have the target write one document, retrying transient failures.

        Touches neither the ledger nor the summary: the outcome is committed
        with its batch by :meth:`commit`.
        """
        document = action.document
        retry = self.account.retry
        item = ExportItem(document, name, self.rt.blobs.path(document.sha256))
        outcome = _Outcome(action, name)
        if self.abort is not None or self.rt.stop.is_set():
            return outcome.ends("untried")  # queued before the run stopped
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            outcome.attempts = attempt
            started = time.monotonic()
            try:
                result = self.target.export(item)
            except PermanentError as exc:
                return self.note(outcome.ends("rejected", str(exc)))
            except TransientError as exc:
                if self.rt.stop.is_set():
                    return self.note(outcome.ends("abandoned", str(exc)))
                if attempt < retry.attempts:
                    delay = backoff(attempt, retry.initial, retry.max, exc.retry_after)
                    self.log.info(
                        "document.retrying",
                        document=document.id,
                        remote_name=name,
                        attempt=attempt,
                        delay_s=round(delay, 2),
                        error=str(exc),
                    )
                    if not self.rt.stop.wait(delay):
                        continue
                    return self.note(outcome.ends("abandoned", str(exc)))
                return self.note(outcome.ends("failed", str(exc)))
            except ConnectorError as exc:
                return self.note(outcome.ends("failed", str(exc)))
            except Exception as exc:  # a bug in a plugin: record it, keep going
                outcome.traceback = traceback.format_exc(limit=5)
                return self.note(outcome.ends("failed", f"{type(exc).__name__}: {exc}"))
            outcome.remote_ref = result.remote_ref
            outcome.duration_s = round(time.monotonic() - started, 3)
            return self.note(outcome.ends("exported"))

    # -- group commit (the run's main thread) ----------------------------------

    def commit(self, batch: list[_Outcome]) -> None:
        """Barrier, then the batch's outcomes in one transaction, then their events.

        Nothing is recorded as exported before the target's barrier returned:
        if it fails, the batch's exports count as failed (retried later under
        the same names).
        """
        exported = [o for o in batch if o.kind == "exported"]
        if exported and self.target.defers_durability:
            try:
                self.target.barrier()
            except Exception as exc:
                error = f"making the exported documents durable failed: {exc}"
                for o in exported:
                    self.note(o.ends("failed", error))
                exported = []
        now = self.rt.clock.now()
        account = self.account.id
        next_at = now + self.account.retry.max
        with self.rt.ledger.transaction() as tx:
            tx.mark_exported(
                account,
                [
                    Exported(o.action.document.id, o.action.document.sha256, o.remote_ref or "")
                    for o in exported
                ],
                now,
            )
            # Queued but never tried (the run stopped): as if never reached.
            tx.release(
                account,
                [
                    o.action.document.id
                    for o in batch
                    if o.kind == "untried" and o.action.candidate.state is None
                ],
            )
            for o in batch:
                if o.kind == "failed":
                    tx.mark_failed(account, o.action.document.id, o.error, o.attempts, next_at, now)
                elif o.kind == "rejected":
                    tx.mark_rejected(account, o.action.document.id, o.error, o.attempts, now)
        for o in batch:
            if o.kind != "untried":
                self._report(o, next_at)

    def note(self, o: _Outcome) -> _Outcome:
        """Count failures in a row as deliveries end; too many stop the run.

        Counted by the worker that delivered, at once, so that no further
        document starts after the one that made it too many.
        """
        with self.lock:
            if o.kind == "exported":
                self.consecutive_failures = 0
            elif o.kind == "failed":
                self.consecutive_failures += 1
                if self.consecutive_failures >= CONSECUTIVE_FAILURES_TO_ABORT and not self.abort:
                    self.abort = f"{self.consecutive_failures} documents in a row failed: {o.error}"
        return o

    def _report(self, o: _Outcome, next_at: datetime) -> None:
        """Count, log and announce one committed outcome."""
        document = o.action.document
        log = self.log.bind(document=document.id, remote_name=o.name)
        counts = self.summary.counts
        if o.kind == "exported":
            counts["exported"] += 1
            log.info(
                "document.exported",
                remote_ref=o.remote_ref,
                revision=document.revision,
                size=document.size,
                reason=o.action.reason,
                duration_s=o.duration_s,
            )
            self._announce(o, log)
        elif o.kind == "failed":
            extra = {"traceback": o.traceback} if o.traceback else {}
            log.error(
                "document.failed",
                stage="export",
                error=o.error,
                attempts=o.attempts,
                next_attempt_at=next_at.isoformat(),
                **extra,
            )
            counts["failed"] += 1
        elif o.kind == "rejected":
            log.error("document.rejected", reason=o.error)
            counts["rejected"] += 1
        else:
            # Shutting down: the ledger keeps the "exporting" intent, so the
            # next start exports this document again under the same remote
            # name (the target replaces idempotently) instead of waiting out
            # a back-off.
            log.warning("document.abandoned", error=o.error, attempts=o.attempts)
            counts["abandoned"] += 1

    def _announce(self, o: _Outcome, log: Any) -> None:
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
                document=o.action.document,
                account_id=self.account.id,
                remote_name=o.name,
                remote_ref=o.remote_ref,
            )

    def run_batches(
        self,
        actions: Iterator[Action],
        workers: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Carry out the plan in group-committed batches on ``workers`` threads.

        Up to a batch of deliveries is queued for the workers while the
        main thread plans and reserves the next batch. Stops taking new
        documents on shutdown or after :data:`CONSECUTIVE_FAILURES_TO_ABORT`
        failures in a row; what was delivered is still committed, and the
        intents of documents never tried that had no ledger row are dropped
        (they stay plainly pending).
        """
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"export-{self.account.id}"
        ) as pool:
            batcher = _Batcher(self, pool, workers, progress)
            try:
                for chunk in self._chunks(actions, progress):
                    if self._stopping():
                        break
                    batcher.add(self.reserve_batch(chunk))
            finally:
                batcher.finish()
        if self.abort:
            raise _AbortRun(self.abort)

    def _stopping(self) -> bool:
        if self.rt.stop.is_set():
            self.summary.error = "interrupted by shutdown"
            return True
        return self.abort is not None

    def _chunks(
        self, actions: Iterator[Action], progress: Callable[[int], None] | None
    ) -> Iterator[list[Action]]:
        """The plan's export actions in batches; skips are counted on the way."""
        chunk: list[Action] = []
        for action in actions:
            if action.kind is ActionKind.SKIP:
                self.execute(action)
                if progress:
                    progress(1)
                continue
            chunk.append(action)
            if len(chunk) >= BATCH_SIZE:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


@dataclass
class _Outcome:
    """What became of one delivery, until its batch is committed."""

    action: Action
    name: str
    kind: str = ""
    """exported, failed, rejected, abandoned, or untried (the run stopped first)."""
    error: str = ""
    attempts: int = 0
    remote_ref: str | None = None
    duration_s: float = 0.0
    traceback: str | None = None

    def ends(self, kind: str, error: str = "") -> _Outcome:
        self.kind, self.error = kind, error
        return self


class _Batcher:
    """Feeds reserved documents to the workers and commits their outcomes in batches."""

    def __init__(
        self,
        run: _AccountRun,
        pool: ThreadPoolExecutor,
        workers: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.run_ = run
        self.pool = pool
        # A batch's worth may wait in the pool's queue, so that the workers
        # have work while the main thread plans, reserves and commits.
        self.limit = max(2 * workers, BATCH_SIZE)
        self.progress = progress
        self.queue: deque[tuple[Action, str]] = deque()
        # Deliveries announce their end here (a done-callback): collecting
        # one costs the same however many are in flight. (concurrent.futures'
        # wait() installs and removes a waiter on every pending future per
        # call; called once per finished delivery with a batch in flight it
        # took 90 of 153 profiled seconds of a 100,000-document export.)
        self.finished: queue.SimpleQueue[Future[_Outcome]] = queue.SimpleQueue()
        self.in_flight = 0
        self.pending: list[_Outcome] = []
        self.deadline = 0.0  # when self.pending must be committed

    def add(self, reserved: list[tuple[Action, str]]) -> None:
        """Hand a reserved batch to the workers; commit outcomes as batches fill or age.

        Returns once all of it is handed over (or the run stops), with up to
        :attr:`limit` deliveries still in flight: the caller plans and
        reserves the next batch while the workers write this one.
        """
        run = self.run_
        self.queue.extend(reserved)
        while self.queue and not run._stopping():
            while self.queue and self.in_flight < self.limit:
                action, name = self.queue.popleft()
                future = self.pool.submit(run.deliver, action, name)
                future.add_done_callback(self.finished.put)
                self.in_flight += 1
            if self.queue:
                self._wait()

    def finish(self) -> None:
        """Wait for what is in flight and commit everything delivered."""
        run = self.run_
        try:
            while self.in_flight:
                self._wait()
            if self.pending:
                self._commit()
        finally:
            if self.queue:
                # Never handed over (the run stopped): drop the fresh intents.
                unused = [a.document.id for a, _ in self.queue if a.candidate.state is None]
                self.queue.clear()
                with run.rt.ledger.transaction() as tx:
                    tx.release(run.account.id, unused)

    def _wait(self) -> None:
        """Collect finished deliveries; commit a batch when it is full or old enough."""
        timeout = max(0.0, self.deadline - time.monotonic()) if self.pending else None
        done: list[Future[_Outcome]] = []
        try:
            done.append(self.finished.get(timeout=timeout))
            while True:  # and whatever else has finished meanwhile
                done.append(self.finished.get_nowait())
        except queue.Empty:
            pass
        self.in_flight -= len(done)
        self._collect(done)
        if self.pending and time.monotonic() >= self.deadline:
            self._commit()

    def _collect(self, done: list[Future[_Outcome]]) -> None:
        for future in done:
            if not self.pending:
                self.deadline = time.monotonic() + BATCH_SECONDS
            self.pending.append(future.result())
            if len(self.pending) >= BATCH_SIZE:
                self._commit()

    def _commit(self) -> None:
        batch, self.pending = self.pending, []
        self.run_.commit(batch)
        if self.progress:
            self.progress(sum(1 for o in batch if o.kind != "untried"))


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
        if rt.dry_run:
            for action in actions:
                if rt.stop.is_set():
                    summary.error = "interrupted by shutdown"
                    break
                run.execute(action)
                if progress:
                    progress(1)
        else:
            run.run_batches(actions, workers, progress)
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
