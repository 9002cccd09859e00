"""What ``status`` and ``documents`` report, computed from the catalog and ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync.daemon.config.models import ExportConfig, SourceConfig
from invoicesync.daemon.engine.plan import account_candidates
from invoicesync.daemon.engine.runtime import Runtime
from invoicesync.daemon.restrictions.evaluator import Check
from invoicesync.daemon.scheduler.nextruns import Schedule, read_schedule
from invoicesync.daemon.scheduler.stale import StaleLimits
from invoicesync.daemon.storage.ledger import LedgerState
from invoicesync.plugins.models import Document


@dataclass
class AccountStatus:
    account: str
    type: str
    exported: int
    pending: int
    failed: int
    rejected: int
    last_run: datetime | None
    last_result: str | None
    last_counts: dict[str, Any]
    next_run: datetime | None
    daemon_running: bool = False
    #: No successful run for longer than ``stale_after`` (see scheduler/stale.py).
    stale: bool = False
    stale_after_s: float | None = None
    last_success: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def last_run_text(self, tz: ZoneInfo) -> str:
        return f"{self.last_run.astimezone(tz):%Y-%m-%d %H:%M}" if self.last_run else "never"

    def next_run_text(self, tz: ZoneInfo) -> str:
        if self.next_run:
            return f"{self.next_run.astimezone(tz):%Y-%m-%d %H:%M:%S}"
        return "-" if self.daemon_running else "daemon not running"


def pending_count(rt: Runtime, account: ExportConfig) -> int:
    """Eligible documents not exported yet (evaluates every candidate)."""
    now = rt.clock.now()
    evaluator = rt.evaluators[account.id]
    return sum(
        1
        for c in account_candidates(rt, account, now)
        if c.state in (None, LedgerState.EXPORTING, LedgerState.EXPORTED)
        and evaluator.accepts(c.document, now)
    )


def account_status(rt: Runtime, account: ExportConfig) -> AccountStatus:
    counts = rt.ledger.counts(account.id)
    last = rt.runs.last("export", account.id)
    schedule = read_schedule(rt.state_dir)
    stale = StaleLimits().staleness(rt, "account", account)
    return AccountStatus(
        account=account.id,
        type=account.type,
        exported=counts[LedgerState.EXPORTED],
        pending=pending_count(rt, account),
        failed=counts[LedgerState.FAILED],
        rejected=counts[LedgerState.REJECTED],
        last_run=last.started_at if last else None,
        last_result=last.status if last else None,
        last_counts=last.counts if last else {},
        next_run=next_run_time(account, schedule),
        daemon_running=schedule is not None,
        stale=stale.stale,
        stale_after_s=stale.as_dict()["stale_after_s"],
        last_success=stale.last_success,
    )


@dataclass
class SourceStatus:
    source: str
    type: str
    documents: int
    last_run: datetime | None
    last_result: str | None
    last_counts: dict[str, Any]
    last_success: datetime | None
    next_run: datetime | None
    stale: bool
    stale_after_s: float | None
    daemon_running: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def source_status(rt: Runtime, source: SourceConfig) -> SourceStatus:
    """``status --sources``: a source's last run, documents and staleness."""
    last = rt.runs.last("import", source.id)
    schedule = read_schedule(rt.state_dir)
    stale = StaleLimits().staleness(rt, "source", source)
    return SourceStatus(
        source=source.id,
        type=source.type,
        documents=rt.catalog.count(source=source.id),
        last_run=last.started_at if last else None,
        last_result=last.status if last else None,
        last_counts=last.counts if last else {},
        last_success=stale.last_success,
        next_run=schedule.jobs.get(f"import:{source.id}") if schedule else None,
        stale=stale.stale,
        stale_after_s=stale.as_dict()["stale_after_s"],
        daemon_running=schedule is not None,
    )


def next_run_time(account: ExportConfig, schedule: Schedule | None) -> datetime | None:
    """When the running daemon next exports ``account``, as the daemon published it.

    None when no daemon runs (see :mod:`invoicesync.daemon.scheduler.nextruns`)
    or the account has no schedule. An ``after_import`` account runs after the
    next import of any source.
    """
    if schedule is None or account.schedule is None:
        return None
    if account.schedule.after_import:
        return schedule.next_import()
    return schedule.jobs.get(f"export:{account.id}")


def document_states(
    rt: Runtime,
    accounts: Sequence[ExportConfig],
    state: str | None,
    limit: int,
    duplicates_only: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Documents with their state per account (a ledger state, else pending/excluded),
    at most ``limit`` of them (0: all), and how many match in all."""
    from invoicesync.daemon.storage.schema import documents

    now = rt.clock.now()
    rows: list[dict[str, Any]] = []
    matched = 0
    where = documents.c.duplicate_of.is_not(None) if duplicates_only else None
    for doc in rt.catalog.iter_documents(where):
        if limit and matched >= limit and state is None and where is None:
            # Without a filter every document matches: count in SQL.
            return rows, rt.catalog.count()
        per_account: dict[str, str] = {}
        for account in accounts:
            entry = rt.ledger.entry(account.id, doc.id)
            if entry is not None and not (
                entry.state is LedgerState.EXPORTED and entry.exported_sha256 != doc.sha256
            ):
                per_account[account.id] = entry.state.value
            else:
                accepted = rt.evaluators[account.id].accepts(doc, now)
                per_account[account.id] = "pending" if accepted else "excluded"
        if state is not None and state not in per_account.values():
            continue
        matched += 1
        if limit and len(rows) >= limit:
            continue  # only counted
        row = doc.model_dump(mode="json")
        row["accounts"] = per_account
        rows.append(row)
    return rows, matched


@dataclass(frozen=True)
class Explanation:
    """``invoicesync explain``: each check, the verdict and what the ledger says.

    The command line and the status page both render this, so they use the
    same words.
    """

    account: str
    document: str
    checks: list[Check]
    export: bool
    #: Lines about the ledger (already exported, failed, interrupted).
    notes: list[str]

    @property
    def verdict(self) -> str:
        return "export" if self.export else "do not export"


def explain(rt: Runtime, account: str, document: Document) -> Explanation:
    """Evaluate ``document`` on ``account`` now and describe its ledger entry."""
    decision = rt.evaluators[account].evaluate(document, rt.clock.now())
    entry = rt.ledger.entry(account, document.id)
    notes: list[str] = []
    if entry is not None:
        if entry.exported_at is not None:
            when = entry.exported_at.astimezone(rt.config.tz)
            notes.append(
                f"already exported on {when:%Y-%m-%d %H:%M %Z} "
                f"as {entry.remote_name} (revision {entry.revision})"
            )
        if entry.state.value in ("failed", "rejected"):
            notes.append(
                f"ledger: {entry.state.value} after {entry.attempts} attempt(s): {entry.last_error}"
            )
        elif entry.state.value == "exporting":
            notes.append("ledger: an export was interrupted; the next sync finishes it")
    return Explanation(account, document.id, list(decision.checks), decision.export, notes)
