"""What ``status`` and ``documents`` report, computed from the catalog and ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync.daemon.config.models import ExportConfig
from invoicesync.daemon.engine.exporter import iter_candidates
from invoicesync.daemon.engine.runtime import Runtime
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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def last_run_text(self, tz: ZoneInfo) -> str:
        return f"{self.last_run.astimezone(tz):%Y-%m-%d %H:%M}" if self.last_run else "never"

    def next_run_text(self, tz: ZoneInfo) -> str:
        return f"{self.next_run.astimezone(tz):%Y-%m-%d %H:%M}" if self.next_run else "-"


def pending_count(rt: Runtime, account: ExportConfig) -> int:
    """Eligible documents not exported yet (evaluates every candidate)."""
    now = rt.clock.now()
    evaluator = rt.evaluators[account.id]
    return sum(
        1
        for c in iter_candidates(rt, account, now)
        if c.state in (None, LedgerState.EXPORTING, LedgerState.EXPORTED)
        and evaluator.evaluate(c.document, now).export
    )


def account_status(rt: Runtime, account: ExportConfig) -> AccountStatus:
    counts = rt.ledger.counts(account.id)
    last = rt.runs.last("export", account.id)
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
        next_run=next_run_time(account, last.started_at if last else None, rt.clock.now()),
    )


def next_run_time(
    account: ExportConfig, last_run: datetime | None, now: datetime
) -> datetime | None:
    """When the daemon's schedule next fires after ``now`` (None without a schedule)."""
    schedule = account.schedule
    if schedule is None or schedule.after_import:
        return None
    if schedule.every is not None:
        if last_run is None:
            return now
        return max(now, last_run + schedule.every)
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(schedule.cron or "")
    result: datetime | None = trigger.get_next_fire_time(None, now)
    return result


def document_states(
    rt: Runtime, accounts: Sequence[ExportConfig], state: str | None, limit: int
) -> list[dict[str, Any]]:
    """Documents with their state per account: a ledger state, else pending/excluded."""
    now = rt.clock.now()
    rows: list[dict[str, Any]] = []
    for doc in rt.catalog.iter_documents():
        per_account: dict[str, str] = {}
        for account in accounts:
            entry = rt.ledger.entry(account.id, doc.id)
            if entry is not None and not (
                entry.state is LedgerState.EXPORTED and entry.exported_sha256 != doc.sha256
            ):
                per_account[account.id] = entry.state.value
            else:
                decision = rt.evaluators[account.id].evaluate(doc, now)
                per_account[account.id] = "pending" if decision.export else "excluded"
        if state is not None and state not in per_account.values():
            continue
        row = doc.model_dump(mode="json")
        row["accounts"] = per_account
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    return rows
