"""The ``invoicesync`` command line (SPEC section 5).

Human output goes to stdout, logs to stderr. Exit codes: 0 all done; 1 some
documents or connectors failed; 2 usage or configuration error; 75 some work
was skipped because another invoicesync process was doing it (``--wait``).

One module per group of commands (:mod:`.daemon`, :mod:`.transfer`,
:mod:`.state`, :mod:`.configuration`, :mod:`.db`, :mod:`.secret`), each
imported only when one of its commands runs (:class:`.lazy.LazyGroup`), and
each importing what its commands use inside them: ``--version`` and
``--help`` import click and nothing heavy (docs/performance.md, "Start-up").
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from .common import internal_error
from .lazy import LazyCommand, LazyGroup

__all__ = ["COMMANDS", "main"]

_PKG = __name__
COMMANDS: dict[str, LazyCommand] = {
    # -- import and export
    "run": LazyCommand(
        f"{_PKG}.daemon",
        "Run as a daemon in the foreground: import and export on each schedule.",
    ),
    "worker": LazyCommand(
        f"{_PKG}.daemon",
        "Run a node that only works: it takes import and export jobs from the queue.",
    ),
    "serve": LazyCommand(
        f"{_PKG}.daemon",
        "Serve the status page, /metrics and /healthz for the state folder, without the "
        "scheduler.",
    ),
    "fetch": LazyCommand(
        f"{_PKG}.transfer",
        "Import from the sources now (all of them, or those named), then exit.",
    ),
    "reextract": LazyCommand(
        f"{_PKG}.transfer", "Run the extractors again over documents already in the catalog."
    ),
    "sync": LazyCommand(
        f"{_PKG}.transfer",
        "Import from every source, then export to the accounts (all, or those named).",
    ),
    "retry": LazyCommand(
        f"{_PKG}.transfer",
        "Put an account's failed and rejected documents back in line, then export them.",
    ),
    # -- looking at the state
    "explain": LazyCommand(
        f"{_PKG}.state", "Show each restriction check for DOCUMENT on ACCOUNT, and the verdict."
    ),
    "status": LazyCommand(
        f"{_PKG}.state",
        "Per account: exported, pending, failed and rejected counts, the last run, and\n"
        "whether it is stale (no successful run for longer than its `stale_after`).",
    ),
    "documents": LazyCommand(
        f"{_PKG}.state", "List documents in the catalog with their state per export account."
    ),
    "backup": LazyCommand(
        f"{_PKG}.state",
        "Copy the state (catalog, content, connectors' cursors) into the new folder PATH.",
    ),
    # -- configuration and plugins
    "check-config": LazyCommand(
        f"{_PKG}.configuration", "Validate the configuration, every connector's options included."
    ),
    "plugins": LazyCommand(
        f"{_PKG}.configuration",
        "Installed plugins and the connector types, checks and extractors each adds.",
    ),
    "config-schema": LazyCommand(
        f"{_PKG}.configuration",
        "Print the JSON Schema of the configuration, connectors' options included.",
    ),
    "db": LazyCommand(f"{_PKG}.db", "Show or upgrade the state database's schema."),
    "secret": LazyCommand(f"{_PKG}.secret", "Store or delete secrets in the system keyring."),
}
"""Every command: the module that defines it and its one-line summary for --help."""


class _Main(LazyGroup):
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
    from invoicesync.daemon.engine.clock import check_range

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


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # click.version_option would need the version when this module is imported;
    # looking it up (importlib.metadata) is left to the one command that prints it.
    if not value or ctx.resilient_parsing:
        return
    from invoicesync.daemon import __version__

    click.echo(f"invoicesync, version {__version__}")
    ctx.exit()


@click.group(
    cls=_Main,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
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
    # Here, not at the top: this runs for `invoicesync COMMAND --help` too, but
    # not for `invoicesync --help` or `--version`.
    from invoicesync.daemon.logging import RedactingStream

    from .context import AppContext

    # Every printed text goes through the secret redactor, whatever printed it
    # (rich tables, click.echo, an exception's text): issue 10 item 6.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = RedactingStream(stdout)
    sys.stderr = RedactingStream(stderr)

    def restore() -> None:
        sys.stdout, sys.stderr = stdout, stderr

    ctx.call_on_close(restore)
    ctx.obj = AppContext(config, now, log_format, log_level)
