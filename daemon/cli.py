"""The ``invoicesync`` command line (SPEC section 5).

Human output goes to stdout, logs to stderr. Exit codes: 0 all done; 1 some
documents or connectors failed; 2 usage or configuration error; 75 some work
was skipped because another invoicesync process was doing it (``--wait``).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from invoicesync.daemon import __version__
from invoicesync.daemon.config.loader import (
    ConfigError,
    LoadedConfig,
    find_config_file,
    load_config,
)
from invoicesync.daemon.engine.clock import Clock, check_range
from invoicesync.daemon.engine.locks import EXIT_BUSY, LockWait
from invoicesync.daemon.engine.runtime import Runtime, open_runtime
from invoicesync.daemon.logging import (
    RedactingStream,
    configure_logging,
    get_logger,
    logs_are_json,
    redirect_logging,
    register_secrets,
)
from invoicesync.daemon.plugin_host import PluginRegistry, load_plugins
from invoicesync.daemon.storage.database import damaged, database_url, describe, is_damage
from invoicesync.plugins.errors import ConfigurationError, PluginError
from rich.console import Console
from rich.markup import escape
from rich.progress import ProgressColumn, Task, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class AppContext:
    """What every command shares: global options, plugins and configuration,
    each loaded at most once and only when a command needs it."""

    def __init__(
        self,
        config: str | None,
        now: datetime | None,
        log_format: str | None,
        log_level: str | None,
    ) -> None:
        self.config_arg = config
        self.clock = Clock(now)
        self.log_format = log_format
        self.log_level = log_level
        # Piped output (less, grep, a file) gets wide tables rather than the
        # 80 columns rich assumes without a terminal.
        # emoji=False: data such as a company named ":warning:" is printed as is.
        self.out = Console(
            highlight=False,
            emoji=False,
            soft_wrap=True,
            width=None if sys.stdout.isatty() else 200,
        )
        self._registry: PluginRegistry | None = None
        self._loaded: LoadedConfig | None = None
        configure_logging(log_format or "auto", log_level or "info")

    @property
    def registry(self) -> PluginRegistry:
        if self._registry is None:
            trace = None
            if os.environ.get("INVOICESYNC_TRACE_PLUGINS", "") not in ("", "0"):
                trace_log = get_logger()

                def trace(line: str) -> None:
                    trace_log.info("plugin.hook_call", detail=line)

            try:
                self._registry = load_plugins(trace=trace)
            except PluginError as exc:
                fail(f"plugin error: {exc}")
        return self._registry

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            try:
                path = find_config_file(self.config_arg)
                self._loaded = load_config(path, self.registry)
            except ConfigError as exc:
                config_invalid([str(p) for p in exc.problems])
            except ConfigurationError as exc:
                config_invalid([str(exc)])
            register_secrets(self._loaded.secrets)
            # The file's log settings apply unless the command line overrides them.
            log = self._loaded.config.log
            configure_logging(
                self.log_format or log.format.value, self.log_level or log.level.value
            )
        return self._loaded

    @contextmanager
    def runtime(
        self,
        *,
        dry_run: bool = False,
        read_only: bool = False,
        command: str | None = None,
        lock_wait: LockWait | None = None,
    ) -> Iterator[Runtime]:
        try:
            rt = open_runtime(
                self.loaded, self.registry, self.clock, dry_run=dry_run, read_only=read_only
            )
        except ConfigurationError as exc:
            config_invalid([str(exc)], file=self._loaded.path if self._loaded else None)
        if command is not None:
            rt.command = command
        if lock_wait is not None:
            rt.lock_wait = lock_wait
        try:
            yield rt
        except DBAPIError as exc:
            # A page deep inside the SQLite file that only a query reaches.
            if not is_damage(exc):
                raise
            config = self.loaded.config
            where = describe(database_url(Path(config.state), config.database))
            fail(str(damaged(where, str(exc.orig))))
        finally:
            rt.close()

    def progress(self) -> Callable[[str, int | None], Callable[[int], None]] | None:
        """A rich progress bar factory when stdout is a terminal, else None.

        One bar per phase (each import, each export): done of total, rate and
        time left when the total is known (exports), done and rate otherwise.
        """
        if not self.out.is_terminal:
            return None
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            _TimeLeft(),
            console=self.out,
            transient=False,
        )
        progress.start()
        self._progress: Any = progress
        redirect_logging()  # rich's stand-in for stderr: log lines print above the bars

        def factory(description: str, total: int | None) -> Callable[[int], None]:
            task = progress.add_task(
                description, total=total, count=_count_text(0, total), rate=""
            )

            def advance(n: int) -> None:
                progress.advance(task, n)
                state = progress.tasks[task]
                speed = state.speed
                progress.update(
                    task,
                    count=_count_text(int(state.completed), total),
                    rate=f"{speed:,.0f}/s" if speed else "",
                )

            return advance

        return factory

    def summary(self, rows: list[tuple[str, str, str]]) -> None:
        """The results of a run: one table on a terminal, else one line per row
        (``import demo: 50 new, ...``, stable for scripts)."""
        if not self.out.is_terminal:
            for phase, name, text in rows:
                self.out.print(f"{phase} {name}: {text}", markup=False)
            return
        table = Table("phase", "name", "result", title="summary", title_justify="left")
        for phase, name, text in rows:
            table.add_row(*_cells(phase, name, text))
        self.out.print(table)

    def stop_progress(self) -> None:
        progress = getattr(self, "_progress", None)
        if progress is not None:
            progress.stop()
            redirect_logging(sys.stderr)
            self._progress = None


def exit_code(summaries: Iterable[Any]) -> int:
    """0 all done; 1 something failed; :data:`EXIT_BUSY` (75) something was
    left undone because another process was running it (and nothing failed)."""
    summaries = list(summaries)
    if any(not s.ok and s.busy is None for s in summaries):
        return EXIT_FAILED
    if any(s.busy is not None for s in summaries):
        return EXIT_BUSY
    return EXIT_OK


def _parse_wait_timeout(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    from invoicesync.daemon.config.durations import parse_duration

    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def wait_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--wait`` and ``--wait-timeout`` of the commands that take run locks."""
    func = click.option(
        "--wait-timeout",
        callback=_parse_wait_timeout,
        metavar="DURATION",
        help="With --wait: give up after this long (30s, 10m, 1h); implies --wait.",
    )(func)
    return click.option(
        "--wait",
        is_flag=True,
        help="When another invoicesync process is running a source or account "
        "(the daemon, another sync), wait for it to finish instead of skipping it "
        f"(skipped work makes the exit code {EXIT_BUSY}).",
    )(func)


def _lock_wait(wait: bool, timeout: float | None) -> LockWait:
    return LockWait(wait=wait or timeout is not None, timeout=timeout)


def _busy_hint(wait: LockWait) -> str:
    return "" if wait.wait else "; --wait waits for it"


def _cells(*values: object) -> list[Text]:
    """Table cells that show data verbatim: a str cell would be parsed as rich markup,
    and a company named ``[/bold]`` or a file ``a[/]b.pdf`` would end the command."""
    return [Text(str(v)) for v in values]


class _TimeLeft(ProgressColumn):
    """``ETA 0:01:23`` for a phase with a known total; nothing for one without."""

    def __init__(self) -> None:
        super().__init__()
        self._remaining = TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text("ETA ") + self._remaining.render(task)


def _count_text(done: int, total: int | None) -> str:
    return f"{done:,} of {total:,}" if total is not None else f"{done:,}"


def fail(message: str, code: int = EXIT_USAGE, prefix: str = "error: ") -> NoReturn:
    click.echo(f"{prefix}{message}", err=True)
    sys.exit(code)


def config_invalid(problems: list[str], file: Path | None = None) -> NoReturn:
    """Report a configuration or set-up problem once, and exit 2.

    With JSON logs (systemd, pipes) it is one ``config.invalid`` event; on a
    terminal it is the problems as text (not a log line repeating them).
    """
    if logs_are_json():
        fields: dict[str, Any] = {"problems": problems}
        if file is not None:
            fields["file"] = str(file)
        get_logger().error("config.invalid", **fields)
        sys.exit(EXIT_USAGE)
    fail("\n".join(problems), prefix="configuration error:\n")


BUG_TRACKER = "https://github.com/invoicesync/invoicesync/issues"


def internal_error(exc: BaseException) -> NoReturn:
    """An unexpected exception: a bug. One event (traceback in a field), exit 1."""
    tb = "".join(traceback.format_exception(exc))
    message = (
        f"internal error: {type(exc).__name__}: {exc}. This is a bug in invoicesync or a "
        f"plugin; please report it at {BUG_TRACKER} with the traceback"
    )
    if logs_are_json():
        get_logger().error(
            "internal.error", error=f"{type(exc).__name__}: {exc}", message=message, traceback=tb
        )
    else:
        click.echo(tb.rstrip() + "\n\n" + message, err=True)
    sys.exit(EXIT_FAILED)


class _Main(click.Group):
    """The command group; any exception a command does not handle is a bug, reported once."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # the last line of defence: a bug
            internal_error(exc)


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not ISO 8601, e.g. 2026-12-01T08:00:00+01:00"
        ) from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a time zone offset, e.g. 2026-12-01T08:00:00+01:00")
    try:
        check_range(parsed)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return parsed


@click.group(
    cls=_Main,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name="invoicesync")
@click.option(
    "--config",
    "config",
    metavar="PATH",
    envvar=None,
    help="Configuration file. Default: $INVOICESYNC_CONFIG, ./invoicesync.yaml, "
    "then /etc/invoicesync/invoicesync.yaml.",
)
@click.option(
    "--now",
    callback=_parse_now,
    metavar="ISO-8601",
    help="Act as if the clock showed this time (import dates and restriction "
    "windows alike), e.g. 2026-12-01T08:00:00+01:00.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    help="auto = console on a terminal, JSON lines otherwise.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def main(
    ctx: click.Context,
    config: str | None,
    now: datetime | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """invoicesync collects business documents from sources (portals, mailboxes,
    folders) and delivers them to export accounts (drives, servers, accounting
    tools) by rules you write in YAML.

    Start with `invoicesync --config config.example.yaml sync`, then look at
    `status` and `explain`. Logs go to stderr, results to stdout.
    """
    # Every printed text goes through the secret redactor, whatever printed it
    # (rich tables, click.echo, an exception's text): issue 10 item 6.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = RedactingStream(stdout)
    sys.stderr = RedactingStream(stderr)

    def restore() -> None:
        sys.stdout, sys.stderr = stdout, stderr

    ctx.call_on_close(restore)
    ctx.obj = AppContext(config, now, log_format, log_level)


# -- import and export -----------------------------------------------------------


@main.command()
@click.option(
    "--no-work",
    is_flag=True,
    help="With executor: procrastinate: only schedule (defer jobs to the queue); "
    "`invoicesync worker` nodes run them.",
)
@click.pass_obj
def run(app: AppContext, no_work: bool) -> None:
    """Run as a daemon in the foreground: import and export on each schedule.

    This is what systemd starts (see packaging/systemd/invoicesync.service).
    Every source and export account with a `schedule:` gets a job; accounts
    with `after_import: true` export after each import. Logs (JSON lines
    when not on a terminal) go to stderr.

    With `executor: procrastinate` the jobs go through a queue in the
    PostgreSQL database instead: of all nodes running `run`, one at a time
    defers the scheduled jobs, and every `run` (unless --no-work) and
    `worker` node works them off (docs/scaling.md).

    Signals: SIGHUP reloads the configuration (an invalid file is logged as
    config.invalid and the running one stays); SIGTERM or Ctrl-C finish the
    document in hand and exit within `daemon.grace_period`.
    """
    _daemon(app, "schedule" if no_work else "run")


@main.command()
@click.pass_obj
def worker(app: AppContext) -> None:
    """Run a node that only works: it takes import and export jobs from the queue.

    Needs `executor: procrastinate` and a PostgreSQL `database:`; start as
    many as you like on any machines that reach the database and the blob
    store (`blobs:`). Each runs `daemon.workers` jobs at a time. Jobs of a
    worker that died (no heartbeat for `daemon.stalled_after`) are queued
    again and finished by the others. Signals as for `run`.
    """
    _daemon(app, "work")


def _daemon(app: AppContext, role: str) -> None:
    from invoicesync.daemon.scheduler.service import Daemon, LogOverrides

    endpoint_factory: Callable[[Any], Any] | None = None
    if app.loaded.config.daemon.http is not None:
        # Only then: the web stack is an extra, and --version must not pay for it.
        from invoicesync.daemon.web.endpoint import daemon_endpoint

        endpoint_factory = daemon_endpoint
    daemon = Daemon(
        app.loaded,
        app.registry,
        app.clock,
        log_overrides=LogOverrides(app.log_format, app.log_level),
        endpoint_factory=endpoint_factory,
        role=role,
    )
    sys.exit(daemon.run())


@main.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to listen. Default: daemon.http.listen, else 127.0.0.1:8080.",
)
@click.pass_obj
def serve(app: AppContext, listen: str | None) -> None:
    """Serve the status page, /metrics and /healthz for the state folder, without the scheduler.

    For looking at a state folder while no daemon runs (or beside one that runs
    without `daemon: http:`): nothing is imported or exported, and /healthz
    answers 503 because no scheduler runs. Access control comes from
    `daemon.http.auth`; without it only a loopback address is allowed.
    Needs the `web` extra (pip install 'invoicesync[web]'). Ctrl-C or SIGTERM stops.
    """
    import signal as signals

    from invoicesync.daemon.config.models import (
        HttpConfig,
        is_loopback,
        missing_web_modules,
        parse_listen,
    )

    missing = missing_web_modules()
    if missing:
        fail(
            f"`serve` needs the 'web' extra ({', '.join(missing)} not installed): "
            "pip install 'invoicesync[web]'"
        )
    from invoicesync.daemon.scheduler.signals import SignalInbox
    from invoicesync.daemon.web.endpoint import Endpoint, ListenError
    from invoicesync.daemon.web.host import WebHost

    loaded = app.loaded
    http = loaded.config.daemon.http or HttpConfig()
    address = http.address
    if listen is not None:
        try:
            address = parse_listen(listen)
        except ValueError as exc:
            fail(f"--listen: {exc}")
        if loaded.http_auth is None and not is_loopback(address[0]):
            fail(
                f"--listen: {address[0]} is not a loopback address; without daemon.http.auth "
                "(bearer or basic) the page listens on 127.0.0.1, ::1 or localhost only"
            )
    with app.runtime(read_only=True) as rt:
        host = WebHost(lambda: rt, mode="serve")
        try:
            endpoint = Endpoint(host, http, loaded.http_auth, listen=address)
        except ListenError as exc:
            fail(str(exc.strerror))
        inbox = SignalInbox((signals.SIGTERM, signals.SIGINT))
        inbox.install()
        endpoint.start()
        auth = loaded.http_auth
        get_logger().info(
            "http.started",
            listen=endpoint.listen,
            mode="serve",
            auth=next(iter(auth)) if auth else None,
        )
        click.echo(f"serving http://{endpoint.listen}/ (Ctrl-C stops)")
        signum = inbox.next()
        endpoint.stop()
        inbox.restore()
        get_logger().info("http.stopped", mode="serve", signal=signum.name)


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

    _known(sources, [s.id for s in app.loaded.config.sources], "source")
    lock_wait = _lock_wait(wait, wait_timeout)
    with app.runtime(command="fetch", lock_wait=lock_wait) as rt:
        try:
            results = do_fetch(rt, sources, progress=app.progress())
        finally:
            app.stop_progress()
    for r in results:
        if r.busy:
            app.out.print(f"{r.source}: skipped — {r.busy}{_busy_hint(lock_wait)}", markup=False)
            continue
        c = r.counts
        app.out.print(
            f"{r.source}: {c['new']} new, {c['new_revision']} changed, {c['metadata']} "
            f"metadata updates, {c['unchanged']} unchanged, {c['failed']} failed"
            + (f" — error: {r.error}" if r.error else ""),
            markup=False,
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

    _known(sources, [s.id for s in app.loaded.config.sources], "source")
    with app.runtime() as rt:
        counts = do_reextract(rt, sources)
    app.out.print(
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

    _known(accounts, [a.id for a in app.loaded.config.exports], "export account")
    lock_wait = _lock_wait(wait, wait_timeout)
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
            rows.append(("import", imp.source, f"skipped — {imp.busy}{_busy_hint(lock_wait)}"))
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
            rows.append(("export", exp.account, f"skipped — {exp.busy}{_busy_hint(lock_wait)}"))
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

    _known((account,), [a.id for a in app.loaded.config.exports], "export account")
    lock_wait = _lock_wait(wait, wait_timeout)
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
        app.out.print(f"{account}: skipped — {summary.busy}{_busy_hint(lock_wait)}", markup=False)
        sys.exit(exit_code([summary]))
    c = summary.counts
    app.out.print(f"{account}: {summary.requeued} document(s) queued again", markup=False)
    app.out.print(
        f"{account}: {c['exported']} exported, {c['failed']} failed, {c['rejected']} rejected",
        markup=False,
    )
    sys.exit(exit_code([summary]))


# -- looking at the state -------------------------------------------------------------


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

    _known((account,), [a.id for a in app.loaded.config.exports], "export account")
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

    tz = app.loaded.config.tz
    accounts = app.loaded.config.exports
    if account:
        if show_sources:
            fail("give ACCOUNT or --sources, not both")
        _known((account,), [a.id for a in accounts], "export account")
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
        click.echo(json.dumps([r.as_dict() for r in items], indent=2, default=_json_value))
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
                *_cells(
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
                *_cells(
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

    accounts = app.loaded.config.exports
    if account:
        _known((account,), [a.id for a in accounts], "export account")
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
                click.echo(json.dumps(row, default=_json_value))
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
                *_cells(
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


# -- configuration and plugins ----------------------------------------------------------


@main.command("check-config")
@click.option("--connect", is_flag=True, help="Also connect to every source and target (check()).")
@click.pass_obj
def check_config(app: AppContext, connect: bool) -> None:
    """Validate the configuration, every connector's options included."""
    loaded = app.loaded
    cfg = loaded.config
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    app.out.print(
        f"{loaded.path}: OK — {len(cfg.sources)} source(s), {len(cfg.exports)} export "
        f"account(s), {len(cfg.companies)} company profile(s)",
        markup=False,
    )
    if not connect:
        return
    from invoicesync.plugins.errors import ConnectorError

    failed = False
    with app.runtime(read_only=True) as rt:
        connectors: list[tuple[str, Any, Callable[[Any], Any]]] = [
            (f"source {s.id}", s, rt.make_source) for s in cfg.sources
        ] + [(f"export {a.id}", a, rt.make_target) for a in cfg.exports]
        for label, entry, make in connectors:
            try:
                connector = make(entry)
                try:
                    connector.check()
                finally:
                    connector.close()
                app.out.print(f"  [green]✓[/] {escape(label)}")
            except (ConnectorError, ConfigurationError, OSError) as exc:
                failed = True
                app.out.print(f"  [red]✗[/] {escape(label)}: ", end="")
                app.out.print(str(exc), markup=False)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(app: AppContext, as_json: bool) -> None:
    """Installed plugins and the connector types, checks and extractors each adds.

    A connector whose optional Python package is missing is marked with what
    installs it (e.g. `sftp (needs: pip install 'invoicesync[sftp]')`); a
    configuration using it is invalid until then.
    """
    from invoicesync.daemon.extras import missing_requirements

    registry = app.registry
    needs: dict[str, str] = {}
    for kind, types in (("source", registry.sources), ("target", registry.targets)):
        for name, cls in types.items():
            missing = missing_requirements(cls)
            if missing:
                needs[f"{kind}:{name}"] = "pip install " + " ".join(
                    sorted({f"'{hint}'" for hint in missing.values()})
                )
    if as_json:
        out = []
        for info in registry.plugins:
            row = info.as_dict()
            row["missing"] = {
                key.split(":", 1)[1]: hint
                for key, hint in needs.items()
                if key.split(":", 1)[1]
                in (info.sources if key.startswith("source:") else info.targets)
            }
            out.append(row)
        click.echo(json.dumps(out, indent=2))
        return

    def listing(kind: str, names: list[str]) -> str:
        return (
            ", ".join(
                name + (f" (needs: {needs[f'{kind}:{name}']})" if f"{kind}:{name}" in needs else "")
                for name in names
            )
            or "-"
        )

    table = Table("plugin", "version", "sources", "targets", "checks", "extractors")
    for info in registry.plugins:
        table.add_row(
            *_cells(
                info.name + (" (built-in)" if info.builtin else ""),
                info.version or __version__,
                listing("source", info.sources),
                listing("target", info.targets),
                ", ".join(info.checks) or "-",
                ", ".join(info.extractors) or "-",
            )
        )
    app.out.print(table)


@main.command("config-schema")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@click.pass_obj
def config_schema(app: AppContext, output: Path | None) -> None:
    """Print the JSON Schema of the configuration, connectors' options included.

    For editors: save it and add `# yaml-language-server: $schema=PATH` at the
    top of your configuration file.
    """
    from invoicesync.daemon.config.schema import build_schema

    text = json.dumps(build_schema(app.registry), indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)


@main.group()
def db() -> None:
    """Show or upgrade the state database's schema.

    On SQLite (the default) invoicesync upgrades the schema itself at start,
    keeping a copy of the file (catalog.sqlite3.before-REVISION). On
    PostgreSQL, where several nodes may share the database, a process refuses
    to start on a schema older or newer than it expects: stop every node, run
    `invoicesync db upgrade` once, start the new version. See docs/operations.md.
    """


@db.command("status")
@click.pass_obj
def db_status(app: AppContext) -> None:
    """The schema revision of the database and the one this invoicesync needs.

    Exit code 0: up to date; 1: `invoicesync db upgrade` (or, on SQLite, the
    next start) will upgrade it; 2: it cannot be used (damaged, written by a
    newer invoicesync, unreachable).
    """
    from invoicesync.daemon.storage.database import schema_report

    try:
        report = schema_report(*_state_of(app))
    except ConfigurationError as exc:
        fail(str(exc))
    app.out.print(report.text, markup=False)
    sys.exit(EXIT_OK if report.up_to_date else EXIT_FAILED)


@db.command("upgrade")
@click.pass_obj
def db_upgrade(app: AppContext) -> None:
    """Apply the schema migrations this invoicesync brings (a no-op when current).

    On PostgreSQL, stop every invoicesync process using the database first;
    two upgrades at once are safe (an advisory lock makes them apply once).
    An SQLite file is copied to catalog.sqlite3.before-REVISION first.
    """
    from invoicesync.daemon.storage.database import upgrade_schema

    try:
        text = upgrade_schema(*_state_of(app))
    except ConfigurationError as exc:
        fail(str(exc))
    app.out.print(text, markup=False)


def _state_of(app: AppContext) -> tuple[Path, str | None, Any]:
    """The state folder, the database URL and the blob store (opened read-only)."""
    from invoicesync.daemon.storage.blobs import open_blob_store

    config = app.loaded.config
    state = Path(config.state)
    return state, config.database, open_blob_store(config.blobs, state, write=False)


@main.group()
def secret() -> None:
    """Store or delete secrets in the system keyring.

    The configuration refers to a stored secret as `keyring:NAME`. On a
    headless server without a keyring, use `env:VAR` or systemd credentials
    (`credential:NAME`) instead; see docs/secrets.md.
    """


@secret.command("set")
@click.option(
    "--allow-insecure-keyring",
    is_flag=True,
    help="Store the secret even if the keyring backend keeps it in plain text "
    "(keyrings.alt's PlaintextKeyring); refused otherwise.",
)
@click.argument("name")
def secret_set(name: str, allow_insecure_keyring: bool) -> None:
    """Store a secret in the keyring as NAME: typed at a prompt (not echoed), or piped in.

    On a terminal it asks twice; otherwise it reads standard input (one
    trailing newline is dropped), so scripts can do
    `printf %s "$PW" | invoicesync secret set NAME`.
    A keyring backend that keeps secrets in a plain-text file is refused unless
    --allow-insecure-keyring is given; with no keyring backend at all it fails
    at once, before asking.
    """
    from invoicesync.daemon.config.secrets import (
        SecretError,
        insecure_keyring_backend,
        keyring_available,
        refuse_insecure_keyring,
        set_secret,
    )

    # Refuse before prompting: nobody should type a secret for nothing.
    if not keyring_available():
        fail(
            f"cannot store secret {name!r}: no keyring backend on this machine (typical "
            "for a headless server); use env:VAR or credential:NAME in the configuration "
            "instead (see docs/secrets.md)"
        )
    insecure = insecure_keyring_backend()
    if not allow_insecure_keyring:
        try:
            refuse_insecure_keyring(name)
        except SecretError as exc:
            fail(str(exc))
    if sys.stdin.isatty():
        value = click.prompt(f"Secret for {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if insecure:
        click.echo(
            f"warning: the keyring backend {insecure} stores {name!r} in PLAIN TEXT "
            "(base64) in a file; anyone who can read that file can read the secret",
            err=True,
        )
    try:
        set_secret(name, value, allow_insecure=allow_insecure_keyring)
    except SecretError as exc:
        fail(str(exc))
    click.echo(f"stored; refer to it as keyring:{name}")


@secret.command("delete")
@click.argument("name")
def secret_delete(name: str) -> None:
    """Remove the secret NAME from the keyring."""
    from invoicesync.daemon.config.secrets import SecretError, delete_secret

    try:
        delete_secret(name)
    except SecretError as exc:
        fail(str(exc))
    click.echo(f"deleted {name}")


def _json_value(value: Any) -> Any:
    """JSON for what json cannot encode: timestamps and dates in ISO 8601 (with ``T``)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _known(given: tuple[str, ...] | list[str], known: list[str], what: str) -> None:
    unknown = [g for g in given if g not in known]
    if unknown:
        fail(
            f"unknown {what} {', '.join(map(repr, unknown))}; configured: "
            f"{', '.join(known) or 'none'}"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
