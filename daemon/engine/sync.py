"""One-shot runs: import from sources, then export to accounts (``fetch``/``sync``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .exporter import ExportSummary, PlannedExport, run_export
from .importer import ImportSummary, run_import
from .plan import account_candidate_count
from .runtime import Runtime

ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


@dataclass
class SyncResult:
    imports: list[ImportSummary] = field(default_factory=list)
    exports: list[ExportSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.imports) and all(s.ok for s in self.exports)


def fetch(
    rt: Runtime, source_ids: Sequence[str] = (), progress: ProgressFactory | None = None
) -> list[ImportSummary]:
    """Import from the given sources (all when empty), in configuration order."""
    sources = [rt.config.source(i) for i in source_ids] if source_ids else rt.config.sources
    results = []
    for source in sources:
        if rt.stop.is_set():
            break
        advance = progress(f"import {source.id}", None) if progress else None
        results.append(run_import(rt, source, advance))
    return results


def export(
    rt: Runtime,
    account_ids: Sequence[str] = (),
    *,
    on_plan: Callable[[PlannedExport], None] | None = None,
    progress: ProgressFactory | None = None,
) -> list[ExportSummary]:
    """Export to the given accounts (all when empty), in configuration order."""
    accounts = [rt.config.export(i) for i in account_ids] if account_ids else rt.config.exports
    results = []
    for account in accounts:
        if rt.stop.is_set():
            break
        advance = None
        if progress is not None:
            total = account_candidate_count(rt, account, rt.clock.now())
            advance = progress(f"export {account.id}", total)
        results.append(run_export(rt, account, on_plan=on_plan, progress=advance))
    return results


def sync(
    rt: Runtime,
    account_ids: Sequence[str] = (),
    *,
    fetch_first: bool = True,
    on_plan: Callable[[PlannedExport], None] | None = None,
    progress: ProgressFactory | None = None,
) -> SyncResult:
    """``invoicesync sync``: fetch every source (unless told not to), then export."""
    result = SyncResult()
    if fetch_first:
        result.imports = fetch(rt, progress=progress)
    result.exports = export(rt, account_ids, on_plan=on_plan, progress=progress)
    return result
