"""What the daemon's jobs do: an import run, an export run, and what follows.

Every job body goes through :class:`Jobs`, which guarantees that one source
or account never runs twice at once -- whoever triggers it: its schedule, an
``after_import`` chain, a reload -- and that a request arriving while it runs
is not lost but runs once more right after ("rerun"). That is what makes
``after_import`` reliable: an import that commits while the account is
already exporting still gets its documents exported.

Job bodies never raise: an unexpected error is logged as ``job.error`` and
the daemon carries on with the next run.
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from invoicesync.daemon.engine.exporter import ExportSummary, run_export
from invoicesync.daemon.engine.failures import describe_error
from invoicesync.daemon.engine.importer import ImportSummary, run_import
from invoicesync.daemon.engine.runtime import Runtime
from invoicesync.daemon.logging import get_logger
from invoicesync.daemon.storage.ledger import LedgerState

from .triggers import Window

__all__ = ["JobHost", "Jobs", "export_job_id", "import_job_id"]


def import_job_id(source_id: str) -> str:
    return f"import:{source_id}"


def export_job_id(account_id: str) -> str:
    return f"export:{account_id}"


class JobHost(Protocol):
    """What the job bodies need from the daemon."""

    stop: threading.Event

    @property
    def runtime(self) -> Runtime:
        """The current configuration's runtime (replaced on reload)."""
        ...

    def submit(self, func: Callable[..., None], args: list[Any], name: str) -> None:
        """Run ``func(*args)`` on the worker pool as soon as a worker is free."""
        ...

    def run_finished(self, kind: str, subject: str, summary: Any) -> None:
        """Called after every import or export run (status, schedule file)."""
        ...


@dataclass
class _Slot:
    running: bool = False
    rerun: bool = False
    reason: str = ""


class Jobs:
    """The job bodies, with no-overlap, rerun and in-flight bookkeeping."""

    def __init__(self, host: JobHost) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._slots: dict[str, _Slot] = {}
        self._active: dict[str, float] = {}  # job key -> monotonic start
        self._queued: set[str] = set()  # import keys requested, not started yet
        #: With ``executor: procrastinate``: queues a run for any node instead
        #: of running it here (``defer(kind, subject, reason)``).
        self.defer: Callable[[str, str, str], Any] | None = None

    # -- bookkeeping -------------------------------------------------------------

    def _claim(self, key: str, reason: str) -> bool:
        """Mark ``key`` running; if it already is, ask for one more run instead."""
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
            if slot.running:
                slot.rerun = True
                slot.reason = reason
                return False
            slot.running = True
            self._active[key] = time.monotonic()
            return True

    def _release(self, key: str) -> str | None:
        """Done with ``key``: the reason for a requested rerun, or None (then idle)."""
        with self._lock:
            slot = self._slots[key]
            if slot.rerun and not self.host.stop.is_set():
                slot.rerun = False
                return slot.reason or "rerun"
            slot.running = False
            slot.rerun = False
            self._active.pop(key, None)
            self._idle.notify_all()
            return None

    def in_flight(self) -> list[str]:
        """Keys (``import:ID``/``export:ID``) of the runs in progress."""
        with self._lock:
            return sorted(self._active)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is in progress; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    # -- imports -------------------------------------------------------------------

    def import_source(self, source_id: str, reason: str = "schedule") -> None:
        """Job body: import one source, then start the ``after_import`` exports."""
        key = import_job_id(source_id)
        with self._lock:
            self._queued.discard(key)
        if self.host.stop.is_set() or not self._claim(key, reason):
            return
        current: str | None = reason
        try:
            while current is not None:
                self._guarded(key, functools.partial(self._import_once, source_id))
                current = self._release(key)
        except BaseException:
            self._release_all(key)
            raise

    def request_import(self, source_id: str, reason: str) -> None:
        """Import ``source_id`` soon: now on a free worker, or right after its current run.

        What a watched folder calls on every change: a burst of changes
        while the import runs collapses into one more run.
        """
        if self.defer is not None:
            self.defer("import", source_id, reason)
            return
        key = import_job_id(source_id)
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and slot.running:
                slot.rerun = True
                slot.reason = reason
                return
            if key in self._queued:
                return  # a request waits for a worker already; it will see this change
            self._queued.add(key)
        self.host.submit(self.import_source, [source_id, reason], f"{key} ({reason})")

    def _import_once(self, source_id: str) -> None:
        rt = self.host.runtime
        source = next((s for s in rt.config.sources if s.id == source_id), None)
        if source is None:  # removed by a reload since this run was queued
            return
        summary: ImportSummary = run_import(rt, source)
        self.host.run_finished("import", source_id, summary)
        if self.host.stop.is_set():
            return
        changed = summary.changed
        for account in rt.config.exports:
            if account.schedule is None or not account.schedule.after_import:
                continue
            # Follow an import that changed the catalog; otherwise only when
            # failed documents wait for their next attempt, so that quiet
            # sources do not write an empty export run every few minutes.
            if changed or rt.ledger.counts(account.id)[LedgerState.FAILED] > 0:
                self.request_export(account.id, f"after import {source_id}")

    # -- exports ---------------------------------------------------------------------

    def request_export(self, account_id: str, reason: str) -> None:
        """Export ``account_id`` soon: now on a free worker, or right after its current run."""
        if self.defer is not None:
            self.defer("export", account_id, reason)
            return
        key = export_job_id(account_id)
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and slot.running:
                slot.rerun = True
                slot.reason = reason
                return
        self.host.submit(self.export_account, [account_id, reason], f"{key} ({reason})")

    def export_account(self, account_id: str, reason: str = "schedule") -> None:
        """Job body: one export run of ``account_id`` (plus reruns requested meanwhile)."""
        key = export_job_id(account_id)
        if self.host.stop.is_set() or not self._claim(key, reason):
            return
        current: str | None = reason
        try:
            while current is not None:
                self._guarded(key, functools.partial(self._export_once, account_id, current))
                current = self._release(key)
        except BaseException:
            self._release_all(key)
            raise

    def _export_once(self, account_id: str, reason: str) -> None:
        rt = self.host.runtime
        account = next((a for a in rt.config.exports if a.id == account_id), None)
        if account is None:
            return
        window = account.schedule.window if account.schedule else None
        if window is not None and account.schedule and account.schedule.after_import:
            # Scheduled runs never fire outside their window (see triggers);
            # an after_import run is started by an import, so check here.
            w = Window(window, rt.config.tz)
            now = rt.clock.now()
            if not w.contains(now):
                get_logger(account=account_id).info(
                    "job.skipped_window",
                    job=export_job_id(account_id),
                    reason=reason,
                    next_opening=str(w.next_opening(now)),
                )
                return
        summary: ExportSummary = run_export(rt, account)
        self.host.run_finished("export", account_id, summary)

    # -- helpers -----------------------------------------------------------------------

    def _guarded(self, key: str, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception as exc:  # e.g. the database went away: log, keep the daemon
            kind, _, subject = key.partition(":")
            ids = {"source": subject} if kind == "import" else {"account": subject}
            get_logger(**ids).error(
                "job.error",
                job=key,
                error=describe_error(exc),
                # A database error's traceback would repeat its SQL.
                traceback=None
                if isinstance(exc, sa.exc.SQLAlchemyError)
                else traceback.format_exc(limit=8),
            )

    def _release_all(self, key: str) -> None:
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                slot.running = False
                slot.rerun = False
            self._active.pop(key, None)
            self._idle.notify_all()
