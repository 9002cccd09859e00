"""A click group whose commands are imported when invoked, not when listed.

``invoicesync --help`` lists every command with its one-line summary, and
``invoicesync --version`` answers, without importing a single command module;
``invoicesync sync ...`` imports the module of ``sync`` only. Each command
module registers its commands on the group as usual (``@main.command()``);
the group knows, per command name, which module to import and the summary to
list. tests/daemon/test_cli_lazy_imports.py checks that the table agrees with
the commands the modules really define (names and summaries).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import NamedTuple

import click


class LazyCommand(NamedTuple):
    """Where a command is defined, and its summary for the group's --help."""

    module: str
    """The module (absolute) whose import registers the command on the group."""
    summary: str
    """The first paragraph of the command's help text."""


class LazyGroup(click.Group):
    """A group that imports a command's module on demand (see the module docstring)."""

    def __init__(self, *args: object, lazy: Mapping[str, LazyCommand], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            importlib.import_module(self.lazy[cmd_name].module)
            if cmd_name not in self.commands:  # a table that lies: a bug, said plainly
                raise RuntimeError(
                    f"{self.lazy[cmd_name].module} does not define the command {cmd_name!r}"
                )
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of --help, from the table for commands not imported yet."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is not None:
                if command.hidden:
                    continue
                text = command.get_short_help_str(limit)
            else:
                # click's own shortening, whatever its version calls it.
                text = click.Command(name, help=self.lazy[name].summary).get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
