"""What the HTTP endpoint reads, for the daemon and for ``invoicesync serve`` alike.

A :class:`WebHost` wraps the current :class:`Runtime` (the daemon swaps it on
reload), says whether a scheduler runs, keeps the last runs' log events in
memory and caches the counts that are expensive on a large catalog (pending
and excluded need the restriction evaluator; see :meth:`WebHost.account_counts`).
"""

from __future__ import annotations

import html
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from invoicesync.daemon.config.models import ExportConfig, SourceConfig
from invoicesync.daemon.config.secrets import SecretRedactor
from invoicesync.daemon.engine.plan import account_candidates
from invoicesync.daemon.engine.runtime import Runtime
from invoicesync.daemon.logging import get_logger
from invoicesync.daemon.scheduler.nextruns import read_schedule
from invoicesync.daemon.scheduler.stale import StaleLimits, Staleness
from invoicesync.daemon.storage.ledger import LedgerState
from invoicesync.daemon.storage.schema import documents

__all__ = ["CACHE_SECONDS", "AccountCounts", "RunEvents", "WebHost"]

#: Counts are recomputed after this long even when no run finished (time-based
#: restrictions move documents between pending and excluded as days pass).
CACHE_SECONDS = 600.0
#: ... and after a run finished, once they are at least this old.
MIN_RECOMPUTE_SECONDS = 30.0


@dataclass(frozen=True)
class AccountCounts:
    """Per account: its documents by state (pending and excluded evaluated now)."""

    exported: int
    #: None while being counted (see :meth:`WebHost.account_counts`).
    pending: int | None
    failed: int
    rejected: int
    excluded: int | None
    exporting: int


class RunEvents:
    """The log events of the last runs, by ``run_id`` (secrets already masked).

    Kept in memory by the daemon only (the log is the record); bounded in
    runs and in events per run.
    """

    def __init__(self, runs: int = 200, per_run: int = 200) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.max_runs = runs
        self.per_run = per_run

    def __call__(self, event: dict[str, Any]) -> None:
        run_id = event.get("run_id")
        if not isinstance(run_id, str):
            return
        with self._lock:
            events = self._runs.get(run_id)
            if events is None:
                events = self._runs[run_id] = []
                while len(self._runs) > self.max_runs:
                    self._runs.popitem(last=False)
            if len(events) < self.per_run:
                events.append(event)

    def get(self, run_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            found = self._runs.get(run_id)
            return None if found is None else list(found)


class WebHost:
    """The endpoint's view of the daemon (or of a state folder, for ``serve``)."""

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        *,
        scheduler_running: Callable[[], bool] = lambda: False,
        started_at: datetime | None = None,
        mode: str = "serve",
        events: RunEvents | None = None,
        next_runs: Callable[[], dict[str, datetime | None] | None] | None = None,
    ) -> None:
        self._runtime = runtime
        self.scheduler_running = scheduler_running
        self.started_at = started_at
        self.mode = mode  # "daemon" or "serve"
        self.events = events
        self._next_runs = next_runs
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int, tuple[int, int]]] = {}
        self._computing: dict[str, threading.Lock] = {}
        self._generation = 0
        self.limits = StaleLimits()
        self.redactor = SecretRedactor()
        self._redacting: frozenset[str] = frozenset()

    @property
    def runtime(self) -> Runtime:
        rt = self._runtime()
        if rt.loaded.secrets != self._redacting:
            # Pages hold text HTML-escaped and URL-quoted: mask those forms too.
            forms = set(rt.loaded.secrets)
            forms |= {html.escape(s) for s in rt.loaded.secrets}
            forms |= {html.escape(s, quote=False) for s in rt.loaded.secrets}
            forms |= {urllib.parse.quote(s) for s in rt.loaded.secrets}
            self.redactor.update(forms)
            self._redacting = rt.loaded.secrets
        return rt

    def now(self) -> datetime:
        return self.runtime.clock.now()

    def invalidate(self) -> None:
        """A run finished: the counts are outdated (see :meth:`account_counts`)."""
        with self._lock:
            self._generation += 1

    def forget_counts(self) -> None:
        """Drop the cached counts (``serve`` and tests: recompute at the next request)."""
        with self._lock:
            self._counts.clear()

    # -- schedule ----------------------------------------------------------------------

    def next_runs(self) -> dict[str, datetime | None] | None:
        """``job id -> next run`` from the scheduler, else from a running daemon's file."""
        if self._next_runs is not None:
            return self._next_runs()
        schedule = read_schedule(self.runtime.state_dir)
        return None if schedule is None else schedule.jobs

    def next_run(self, kind: str, entry: SourceConfig | ExportConfig) -> datetime | None:
        jobs = self.next_runs()
        if jobs is None or entry.schedule is None:
            return None
        if entry.schedule.after_import:
            times = [t for k, t in jobs.items() if k.startswith("import:") and t]
            return min(times) if times else None
        return jobs.get(f"{'import' if kind == 'source' else 'export'}:{entry.id}")

    # -- staleness ---------------------------------------------------------------------

    def staleness(self, kind: str, entry: SourceConfig | ExportConfig) -> Staleness:
        return self.limits.staleness(self.runtime, kind, entry, self.started_at)

    # -- counts ------------------------------------------------------------------------

    def source_documents(self) -> dict[str, int]:
        """Documents in the catalog per source (one grouped, indexed query)."""
        query = sa.select(documents.c.source, sa.func.count()).group_by(documents.c.source)
        with self.runtime.engine.connect() as conn:
            return {str(s): int(n) for s, n in conn.execute(query)}

    def companies(self) -> set[str]:
        """Company ids documents carry (an index-only scan), for the filter's choices."""
        query = sa.select(documents.c.company).where(documents.c.company.is_not(None)).distinct()
        with self.runtime.engine.connect() as conn:
            return {str(c) for c in conn.execute(query).scalars()}

    def account_counts(self, account: ExportConfig, wait: bool = False) -> AccountCounts:
        """The account's counts: ledger states as they are now, pending and excluded cached.

        Ledger states are one grouped, indexed query. Pending and excluded
        evaluate every document without a ledger row -- as much work as an
        export run's candidate scan, seconds on a large catalog -- so they
        are computed on a background thread and never hold up a page or a
        Prometheus scrape: until the first result they are None ("being
        counted"). A finished run marks them outdated; they are recomputed
        when asked and at least :data:`MIN_RECOMPUTE_SECONDS` old (or older
        than :data:`CACHE_SECONDS` in any case), one computation per account
        at a time. ``wait`` computes them in the calling thread if there are
        none yet (tests, benchmarks).
        """
        rt = self.runtime
        states = rt.ledger.counts(account.id)
        evaluated = self._evaluated(account, wait)
        pending = excluded = None
        if evaluated is not None:
            with rt.engine.connect() as conn:
                total = int(
                    conn.execute(sa.select(sa.func.count()).select_from(documents)).scalar_one()
                )
            pending = evaluated[0]
            excluded = max(0, total - sum(states.values()) - evaluated[1])
        return AccountCounts(
            exported=states[LedgerState.EXPORTED],
            pending=pending,
            failed=states[LedgerState.FAILED],
            rejected=states[LedgerState.REJECTED],
            excluded=excluded,
            exporting=states[LedgerState.EXPORTING],
        )

    def refresh_counts(self) -> None:
        """Start computing every account's pending and excluded counts (in the background)."""
        for account in self.runtime.config.exports:
            self._evaluated(account, wait=False)

    def _evaluated(self, account: ExportConfig, wait: bool) -> tuple[int, int] | None:
        """(pending, pending without a ledger row) as cached; a refresh started if due."""
        with self._lock:
            cached = self._counts.get(account.id)
            generation = self._generation
            lock = self._computing.setdefault(account.id, threading.Lock())
        if cached is not None:
            age = time.monotonic() - cached[0]
            outdated = cached[1] != generation and age >= MIN_RECOMPUTE_SECONDS
            if outdated or age >= CACHE_SECONDS:
                self._start_count(account, generation, lock)
            return cached[2]
        if wait:
            with lock:
                with self._lock:
                    again = self._counts.get(account.id)
                if again is None:
                    self._count(account, generation)
                with self._lock:
                    done = self._counts.get(account.id)
            return None if done is None else done[2]
        self._start_count(account, generation, lock)
        return None

    def _start_count(self, account: ExportConfig, generation: int, lock: threading.Lock) -> None:
        if not lock.acquire(blocking=False):
            return  # being computed already

        def work() -> None:
            try:
                self._count(account, generation)
            except Exception as exc:  # e.g. the database is away: the next request retries
                get_logger(account=account.id).error(
                    "http.error", path="(counts)", error=f"{type(exc).__name__}: {exc}"
                )
            finally:
                lock.release()

        threading.Thread(target=work, name=f"counts-{account.id}", daemon=True).start()

    def _count(self, account: ExportConfig, generation: int) -> None:
        counts = self._compute_counts(account)
        with self._lock:
            self._counts[account.id] = (time.monotonic(), generation, counts)

    def _compute_counts(self, account: ExportConfig) -> tuple[int, int]:
        rt = self.runtime
        now = rt.clock.now()
        evaluator = rt.evaluators[account.id]
        pending = pending_new = 0
        for candidate in account_candidates(rt, account, now):
            if candidate.state not in (None, LedgerState.EXPORTING, LedgerState.EXPORTED):
                continue
            if evaluator.accepts(candidate.document, now):
                pending += 1
                if candidate.state is None:
                    pending_new += 1
        return pending, pending_new
