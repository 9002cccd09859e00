"""Import and export now: ``fetch``, ``reextract``, ``sync`` and ``retry``.

The commands that scripts and timers run most: a no-op ``sync`` must start
fast, so everything beyond click is imported inside them.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import main
from .common import EXIT_FAILED, EXIT_OK, busy_hint, exit_code, known, wait_for_locks, wait_options
from .context import AppContext


@main.command()
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@wait_options
@click.pass_obj
def fetch(
    app: AppContext, sources: tuple[str, ...], wait: bool, wait_timeout: float | None
) -> None:
    """Import from the sources now (all of them, or those named), then exit.

    A source that another invoicesync process is importing right now is
    skipped (exit code 75) unless --wait is given.
    """
    from invoicesync.daemon.engine.sync import fetch as do_fetch

    known(sources, [s.id for s in app.loaded.config.sources], "source")
    lock_wait = wait_for_locks(wait, wait_timeout)
    with app.runtime(command="fetch", lock_wait=lock_wait) as rt:
        try:
            results = do_fetch(rt, sources, progress=app.progress())
        finally:
            app.stop_progress()
    for r in results:
        if r.busy:
            app.line(f"{r.source}: skipped — {r.busy}{busy_hint(lock_wait)}")
            continue
        c = r.counts
        app.line(
            f"{r.source}: {c['new']} new, {c['new_revision']} changed, {c['metadata']} "
            f"metadata updates, {c['unchanged']} unchanged, {c['failed']} failed"
            + (f" — error: {r.error}" if r.error else "")
        )
    sys.exit(exit_code(results))


@main.command()
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@click.pass_obj
def reextract(app: AppContext, sources: tuple[str, ...]) -> None:
    """Run the extractors again over documents already in the catalog.

    For the documents of the named sources (default: all), read the stored
    content again with each source's `extract:` extractors, e.g. after an
    upgrade that reads more e-invoice fields or after adding VAT ids to the
    company profiles. The source's own fields still win. A changed result is
    a metadata update that the next sync evaluates like any other: accounts
    whose restrictions now match export the document. Nothing is deleted.
    """
    from invoicesync.daemon.engine.reextract import reextract as do_reextract

    known(sources, [s.id for s in app.loaded.config.sources], "source")
    with app.runtime() as rt:
        counts = do_reextract(rt, sources)
    app.line(
        f"{counts['updated']} updated, {counts['unchanged']} unchanged, {counts['failed']} failed"
    )
    sys.exit(EXIT_OK if counts["failed"] == 0 else EXIT_FAILED)


@main.command()
@click.argument("accounts", nargs=-1, metavar="[ACCOUNT]...")
@click.option(
    "--dry-run", is_flag=True, help="Print what would go where, and why; change nothing anywhere."
)
@click.option("--no-fetch", is_flag=True, help="Do not import first; export what the catalog has.")
@wait_options
@click.pass_obj
def sync(
    app: AppContext,
    accounts: tuple[str, ...],
    dry_run: bool,
    no_fetch: bool,
    wait: bool,
    wait_timeout: float | None,
) -> None:
    """Import from every source, then export to the accounts (all, or those named).

    With --dry-run nothing is written (catalog, ledger, targets): each planned
    export is printed as ACCOUNT DOCUMENT -> REMOTE-NAME (reason), followed by
    how many documents each restriction check excluded.

    A source or account that another invoicesync process (the daemon, another
    sync) is running right now is skipped, with a line naming that process,
    and the exit code is 75; --wait waits for it instead.
    """
    from invoicesync.daemon.engine.sync import sync as do_sync

    known(accounts, [a.id for a in app.loaded.config.exports], "export account")
    lock_wait = wait_for_locks(wait, wait_timeout)
    with app.runtime(dry_run=dry_run, command="sync", lock_wait=lock_wait) as rt:
        fetch_first = not no_fetch

        def plan(p: Any) -> None:
            # Plain tab-separated lines (rich would expand the tabs): easy to grep and cut.
            click.echo(f"{p.account}\t{p.document_id}\t-> {p.remote_name}\t({p.reason})")

        try:
            result = do_sync(
                rt,
                accounts,
                fetch_first=fetch_first,
                on_plan=plan if dry_run else None,
                progress=None if dry_run else app.progress(),
            )
        finally:
            app.stop_progress()
    rows: list[tuple[str, str, str]] = []
    for imp in result.imports:
        if imp.busy:
            rows.append(("import", imp.source, f"skipped — {imp.busy}{busy_hint(lock_wait)}"))
            continue
        c = imp.counts
        rows.append(
            (
                "import",
                imp.source,
                f"{c['new']} new, {c['new_revision']} changed, {c['failed']} failed"
                + (f" — error: {imp.error}" if imp.error else ""),
            )
        )
    for exp in result.exports:
        if exp.busy:
            rows.append(("export", exp.account, f"skipped — {exp.busy}{busy_hint(lock_wait)}"))
            continue
        c = exp.counts
        done = f"{c['planned']} would be exported" if dry_run else f"{c['exported']} exported"
        line = f"{done}, {c['failed']} failed, {c['rejected']} rejected, {c['excluded']} excluded"
        if exp.excluded_by:
            line += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(exp.excluded_by.items())) + ")"
        if exp.error:
            line += f" — error: {exp.error}"
        rows.append(("export", exp.account, line))
    app.summary(rows)
    sys.exit(exit_code([*result.imports, *result.exports]))


@main.command()
@click.argument("account")
@wait_options
@click.pass_obj
def retry(app: AppContext, account: str, wait: bool, wait_timeout: float | None) -> None:
    """Put an account's failed and rejected documents back in line, then export them.

    While another invoicesync process (the daemon, a sync) exports to the
    account, nothing is changed and the exit code is 75, unless --wait is
    given: then it waits for that run to end.
    """
    from invoicesync.daemon.engine.exporter import run_export

    known((account,), [a.id for a in app.loaded.config.exports], "export account")
    lock_wait = wait_for_locks(wait, wait_timeout)
    with app.runtime(command="retry", lock_wait=lock_wait) as rt:
        factory = app.progress()
        try:
            summary = run_export(
                rt,
                rt.config.export(account),
                progress=factory(account, None) if factory else None,
                requeue=True,
            )
        finally:
            app.stop_progress()
    if summary.busy:
        app.line(f"{account}: skipped — {summary.busy}{busy_hint(lock_wait)}")
        sys.exit(exit_code([summary]))
    c = summary.counts
    app.line(f"{account}: {summary.requeued} document(s) queued again")
    app.line(f"{account}: {c['exported']} exported, {c['failed']} failed, {c['rejected']} rejected")
    sys.exit(exit_code([summary]))
