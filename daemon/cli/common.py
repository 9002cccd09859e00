"""What the commands share: exit codes, error exits, the run-lock options, formatting.

Cheap to import on purpose (click and the standard library): every command
module imports it, and ``invoicesync COMMAND --help`` must not pay for the
engine. What a helper needs beyond that it imports when called.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from pathlib import Path

    from invoicesync.daemon.engine.locks import LockWait
    from rich.text import Text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BUSY = 75
"""Some work was skipped because another process was doing it (``--wait`` waits instead).

The same value as :data:`invoicesync.daemon.engine.locks.EXIT_BUSY`
(tests/daemon/test_cli_lazy_imports.py keeps them equal), repeated here so
that ``--help`` can name it without importing the engine.
"""

BUG_TRACKER = "https://github.com/invoicesync/invoicesync/issues"


def exit_code(summaries: Iterable[Any]) -> int:
    """0 all done; 1 something failed; :data:`EXIT_BUSY` (75) something was
    left undone because another process was running it (and nothing failed)."""
    summaries = list(summaries)
    if any(not s.ok and s.busy is None for s in summaries):
        return EXIT_FAILED
    if any(s.busy is not None for s in summaries):
        return EXIT_BUSY
    return EXIT_OK


def fail(message: str, code: int = EXIT_USAGE, prefix: str = "error: ") -> NoReturn:
    click.echo(f"{prefix}{message}", err=True)
    sys.exit(code)


def config_invalid(problems: list[str], file: Path | None = None) -> NoReturn:
    """Report a configuration or set-up problem once, and exit 2.

    With JSON logs (systemd, pipes) it is one ``config.invalid`` event; on a
    terminal it is the problems as text (not a log line repeating them).
    """
    from invoicesync.daemon.logging import get_logger, logs_are_json

    if logs_are_json():
        fields: dict[str, Any] = {"problems": problems}
        if file is not None:
            fields["file"] = str(file)
        get_logger().error("config.invalid", **fields)
        sys.exit(EXIT_USAGE)
    fail("\n".join(problems), prefix="configuration error:\n")


def internal_error(exc: BaseException) -> NoReturn:
    """An unexpected exception: a bug. One event (traceback in a field), exit 1."""
    from invoicesync.daemon.logging import get_logger, logs_are_json

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


# -- --wait / --wait-timeout ------------------------------------------------------


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


def wait_for_locks(wait: bool, timeout: float | None) -> LockWait:
    """The LockWait of --wait and --wait-timeout."""
    from invoicesync.daemon.engine.locks import LockWait

    return LockWait(wait=wait or timeout is not None, timeout=timeout)


def busy_hint(wait: LockWait) -> str:
    return "" if wait.wait else "; --wait waits for it"


# -- arguments and output ---------------------------------------------------------


def known(given: tuple[str, ...] | list[str], configured: list[str], what: str) -> None:
    """Exit 2 naming any of ``given`` that is not configured."""
    unknown = [g for g in given if g not in configured]
    if unknown:
        fail(
            f"unknown {what} {', '.join(map(repr, unknown))}; configured: "
            f"{', '.join(configured) or 'none'}"
        )


def cells(*values: object) -> list[Text]:
    """Table cells that show data verbatim: a str cell would be parsed as rich markup,
    and a company named ``[/bold]`` or a file ``a[/]b.pdf`` would end the command."""
    from rich.text import Text

    return [Text(str(v)) for v in values]


def json_value(value: Any) -> Any:
    """JSON for what json cannot encode: timestamps and dates in ISO 8601 (with ``T``)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
