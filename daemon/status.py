"""What ``status`` and ``documents`` report, computed from the catalog and ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync.daemon.config.models import ExportConfig
from invoicesync.daemon.engine.plan import account_candidates
from invoicesync.daemon.engine.runtime import Runtime
from invoicesync.daemon.scheduler.nextruns import Schedule, read_schedule
from invoicesync.daemon.storage.ledger import LedgerState


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
