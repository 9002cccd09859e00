"""Looking at the state: ``explain``, ``status``, ``documents`` and ``backup``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from . import main
from .common import cells, fail, json_value, known
from .context import AppContext


@main.command()
@click.argument("account")
@click.argument("document")
@click.pass_obj
def explain(app: AppContext, account: str, document: str) -> None:
    """Show each restriction check for DOCUMENT on ACCOUNT, and the verdict.

    DOCUMENT is a document id (SOURCE/EXTERNAL-ID) as `invoicesync documents` lists them.
    """
    from invoicesync.daemon.engine.provenance import field_lines
    from invoicesync.daemon.status import explain as do_explain
    from rich.markup import escape

    known((account,), [a.id for a in app.loaded.config.exports], "export account")
    with app.runtime(read_only=True) as rt:
        doc = rt.catalog.get(document)
        if doc is None:
            fail(f"no document {document!r} in the catalog; `invoicesync documents` lists them")
        result = do_explain(rt, account, doc)
    app.out.print(f"[bold]{escape(document)}[/] on account [bold]{escape(account)}[/]")
    for check in result.checks:
        mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
        app.out.print(f"  {mark} {escape(check.name)}: ", end="")
        app.out.print(check.reason, markup=False)
    colour = "green" if result.export else "red"
    app.out.print(f"verdict: [{colour}]{result.verdict}[/]")
    lines = field_lines(doc)
    if lines:
        app.out.print("fields:")
        for line in lines:
            app.out.print(f"  {line}", markup=False)
    for note in result.notes:
        app.out.print(note, markup=False)


@main.command()
@click.argument("account", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--sources",
    "show_sources",
    is_flag=True,
    help="List the sources (last run, documents, stale) instead of the accounts.",
)
@click.pass_obj
def status(app: AppContext, account: str | None, as_json: bool, show_sources: bool) -> None:
    """Per account: exported, pending, failed and rejected counts, the last run, and
    whether it is stale (no successful run for longer than its `stale_after`).

    Without ACCOUNT the sources follow, with their last run and staleness;
    `--sources` lists only them (with --json: one object per source).
    """
    from invoicesync.daemon.status import account_status, source_status
    from rich.table import Table

    tz = app.loaded.config.tz
    accounts = app.loaded.config.exports
    if account:
        if show_sources:
            fail("give ACCOUNT or --sources, not both")
        known((account,), [a.id for a in accounts], "export account")
        accounts = [a for a in accounts if a.id == account]
    with app.runtime(read_only=True) as rt:
        rows = [] if show_sources else [account_status(rt, a) for a in accounts]
        sources = (
            [source_status(rt, s) for s in app.loaded.config.sources]
            if show_sources or (not as_json and not account)
            else []
        )
    if as_json:
        items = sources if show_sources else rows
        click.echo(json.dumps([r.as_dict() for r in items], indent=2, default=json_value))
        return
    if not show_sources:
        table = Table(
            "account",
            "type",
            "exported",
            "pending",
            "failed",
            "rejected",
            "last run",
            "result",
            "next run",
            "stale",
        )
        for r in rows:
            table.add_row(
                *cells(
                    r.account,
                    r.type,
                    r.exported,
                    r.pending,
                    r.failed,
                    r.rejected,
                    r.last_run_text(tz),
                    r.last_result or "-",
                    r.next_run_text(tz),
                    _stale_text(r.stale, r.last_success, tz),
                )
            )
        app.out.print(table)
    if sources:
        table = Table("source", "type", "documents", "last run", "result", "next run", "stale")
        for s in sources:
            table.add_row(
                *cells(
                    s.source,
                    s.type,
                    s.documents,
                    f"{s.last_run.astimezone(tz):%Y-%m-%d %H:%M}" if s.last_run else "never",
                    s.last_result or "-",
                    f"{s.next_run.astimezone(tz):%Y-%m-%d %H:%M:%S}" if s.next_run else "-",
                    _stale_text(s.stale, s.last_success, tz),
                )
            )
        app.out.print(table)


def _stale_text(stale: bool, last_success: datetime | None, tz: Any) -> str:
    if not stale:
        return "no"
    if last_success is None:
        return "STALE (no successful run)"
    return f"STALE (last success {last_success.astimezone(tz):%Y-%m-%d %H:%M})"


@main.command()
@click.option("--account", "account", metavar="ACCOUNT", help="Only this account's state.")
@click.option(
    "--status",
    "state",
    type=click.Choice(["exported", "pending", "failed", "rejected", "excluded", "exporting"]),
    help="Only documents in this state (needs --account when several accounts exist).",
)
@click.option("--limit", default=100, show_default=True, help="At most this many rows (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--duplicates",
    is_flag=True,
    help="Only documents marked duplicate_of another (the same invoice from another source).",
)
@click.option(
    "--provenance",
    is_flag=True,
    help="Under each document, its fields and where each came from (source, e-invoice XML...).",
)
@click.pass_obj
def documents(
    app: AppContext,
    account: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
    duplicates: bool,
    provenance: bool,
) -> None:
    """List documents in the catalog with their state per export account."""
    from invoicesync.daemon.engine.provenance import field_lines
    from invoicesync.daemon.status import document_states
    from invoicesync.plugins.models import Document
    from rich.table import Table

    accounts = app.loaded.config.exports
    if account:
        known((account,), [a.id for a in accounts], "export account")
        accounts = [a for a in accounts if a.id == account]
    with app.runtime(read_only=True) as rt:
        rows, matched = document_states(
            rt, accounts, state, limit, duplicates_only=duplicates
        )
        more = (
            f"{len(rows):,} of {matched:,} documents shown (use --limit 0 for all)"
            if len(rows) < matched
            else None
        )
        if as_json:
            for row in rows:
                click.echo(json.dumps(row, default=json_value))
            if more:
                click.echo(more, err=True)  # stdout stays one JSON object per line
            return
        if provenance:
            for row in rows:
                states = ", ".join(f"{a}: {s}" for a, s in row["accounts"].items())
                app.out.print(f"{row['id']}" + (f"  [{states}]" if states else ""), markup=False)
                doc = Document.model_validate({k: v for k, v in row.items() if k != "accounts"})
                for line in field_lines(doc):
                    app.out.print(f"  {line}", markup=False)
            return
        extra = ("duplicate of",) if duplicates else ()
        table = Table(
            "document", "type", "company", "date", "gross", *extra, *(a.id for a in accounts)
        )
        for row in rows:
            table.add_row(
                *cells(
                    row["id"],
                    row["type"],
                    row["company"] or "-",
                    row["document_date"] or "-",
                    f"{row['gross_amount'] or '-'} {row['currency'] or ''}".strip(),
                    *((row["duplicate_of"] or "-",) if duplicates else ()),
                    *(row["accounts"][a.id] for a in accounts),
                )
            )
        app.out.print(table)
        if more:
            app.out.print(more, markup=False)


@main.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def backup(app: AppContext, path: Path) -> None:
    """Copy the state (catalog, content, connectors' cursors) into the new folder PATH.

    Safe while `invoicesync run` or a sync is working: the SQLite catalog is
    copied with SQLite's online backup API (a consistent snapshot), then the
    content blobs. To restore, stop the daemon and copy PATH's contents into an
    empty state folder. A PostgreSQL catalog is backed up with pg_dump
    instead; see docs/operations.md.
    """
    from invoicesync.daemon.storage.backup import BackupError, backup_state
    from invoicesync.daemon.storage.database import database_url

    cfg = app.loaded.config
    state = Path(cfg.state)
    blobs: Path | None = None
    if cfg.blobs is not None:
        remote = "://" in cfg.blobs and not cfg.blobs.startswith("file://")
        blobs = Path() if remote else Path(cfg.blobs.removeprefix("file://"))
    try:
        summary = backup_state(state, database_url(state, cfg.database), path, blobs)
    except BackupError as exc:
        fail(str(exc))
    if blobs == Path():
        click.echo(
            f"note: the content is in {cfg.blobs}, which this backup does not copy; "
            "back it up with that store's own means (e.g. bucket versioning)",
            err=True,
        )
    app.out.print(
        f"backed up {state} to {summary.path}: catalog {summary.catalog_bytes:,} bytes, "
        f"{summary.blobs:,} content file(s), {summary.blob_bytes:,} bytes",
        markup=False,
    )
