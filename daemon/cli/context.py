"""What every command shares at run time: global options, plugins, configuration, output.

Each is loaded at most once and only when a command needs it; this module
itself imports only what ``invoicesync COMMAND --help`` may afford.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.logging import activate, configure_logging, redirect_logging

from .common import cells, config_invalid, fail

if TYPE_CHECKING:
    from invoicesync.daemon.config.loader import LoadedConfig
    from invoicesync.daemon.engine.locks import LockWait
    from invoicesync.daemon.engine.runtime import Runtime
    from invoicesync.daemon.plugin_host import PluginRegistry
    from rich.console import Console

# What rich strips from printed text (rich.control.strip_control_codes): BEL,
# BS, VT, FF, CR. Plain lines strip the same, so piped output does not depend
# on whether rich printed it.
_CONTROL = dict.fromkeys((7, 8, 11, 12, 13))


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal, decided as rich's ``Console.is_terminal`` does
    (``TTY_COMPATIBLE``, ``FORCE_COLOR``, then isatty) without importing rich."""
    tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "1"
    force_color = os.environ.get("FORCE_COLOR")
    if force_color is not None:
        return force_color != ""
    try:
        return sys.stdout.isatty()
    except ValueError:  # closed
        return False


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
        self._out: Console | None = None
        self._registry: PluginRegistry | None = None
        self._loaded: LoadedConfig | None = None
        self._progress: Any = None
        # Cheap: structlog itself is imported when something first logs.
        configure_logging(log_format or "auto", log_level or "info")

    @property
    def out(self) -> Console:
        """rich's console on stdout, for tables and marked-up text (made on first use)."""
        if self._out is None:
            from rich.console import Console

            # Piped output (less, grep, a file) gets wide tables rather than the
            # 80 columns rich assumes without a terminal.
            # emoji=False: data such as a company named ":warning:" is printed as is.
            self._out = Console(
                highlight=False,
                emoji=False,
                soft_wrap=True,
                width=None if sys.stdout.isatty() else 200,
            )
        return self._out

    @property
    def is_terminal(self) -> bool:
        return self._out.is_terminal if self._out is not None else stdout_is_terminal()

    def line(self, text: str) -> None:
        """Print ``text`` verbatim (no markup) as one line of stdout.

        Through rich on a terminal; plainly otherwise, so that a command whose
        output is a few lines (sync, fetch in scripts and timers) need not
        import rich.
        """
        if self.is_terminal:
            self.out.print(text, markup=False)
        else:
            click.echo(text.translate(_CONTROL))

    @property
    def registry(self) -> PluginRegistry:
        if self._registry is None:
            from invoicesync.daemon.logging import get_logger
            from invoicesync.daemon.plugin_host import load_plugins
            from invoicesync.plugins.errors import PluginError

            # Plugins may log through structlog itself as they load: configured first.
            activate()
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
            from invoicesync.daemon.config.loader import ConfigError, find_config_file, load_config
            from invoicesync.daemon.logging import register_secrets
            from invoicesync.plugins.errors import ConfigurationError

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
        from invoicesync.daemon.engine.runtime import open_runtime
        from invoicesync.daemon.storage.database import (
            damaged,
            database_url,
            describe,
            is_damage,
        )
        from invoicesync.plugins.errors import ConfigurationError
        from sqlalchemy.exc import DBAPIError

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
        if not self.is_terminal:
            return None
        from .progress import start_progress

        self._progress, factory = start_progress(self.out)
        redirect_logging()  # rich's stand-in for stderr: log lines print above the bars
        return factory

    def summary(self, rows: list[tuple[str, str, str]]) -> None:
        """The results of a run: one table on a terminal, else one line per row
        (``import demo: 50 new, ...``, stable for scripts)."""
        if not self.is_terminal:
            for phase, name, text in rows:
                self.line(f"{phase} {name}: {text}")
            return
        from rich.table import Table

        table = Table("phase", "name", "result", title="summary", title_justify="left")
        for phase, name, text in rows:
            table.add_row(*cells(phase, name, text))
        self.out.print(table)

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            redirect_logging(sys.stderr)
            self._progress = None
