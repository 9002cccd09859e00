"""Start-up stays cheap: what ``--version``, ``--help`` and a no-op sync import (issue 13).

No timings here (they would be flaky on a shared machine): each test runs the
real command line in a fresh interpreter and asserts which heavy modules it
did NOT import, which is what made start-up slow (docs/performance.md,
"Start-up"). The lazy command group lists commands from a table, so the table
is checked against the commands the modules really define.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from fixtures.cli import run_cli, write_config

# Run main() in a fresh interpreter and print which of the given modules it imported.
PROBE = """
import json, sys
from invoicesync.daemon.cli import main
try:
    main(sys.argv[2:], prog_name="invoicesync")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
imported = [m for m in json.loads(sys.argv[1]) if m in sys.modules]
print(json.dumps({"code": code, "imported": imported}))
"""

# What --version and --help must never import: the engine's libraries and ours.
HEAVY = [
    "alembic",
    "rich",
    "pydantic",
    "sqlalchemy",
    "structlog",
    "keyring",
    "ruamel.yaml",
    "pluggy",
    "httpx",
    "importlib.metadata",
    "invoicesync.plugins.models",
    "invoicesync.daemon.config.loader",
    "invoicesync.daemon.engine.runtime",
    "invoicesync.daemon.plugin_host",
]


def probe(args: list[str], modules: list[str], cwd: Path | None = None) -> dict[str, object]:
    env = {**os.environ, "INVOICESYNC_PLUGINS": ""}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    result: dict[str, object] = json.loads(lines[-1])
    return result


def all_commands() -> list[list[str]]:
    """Every command and subcommand, as argv prefixes (imports every command module)."""
    from invoicesync.daemon.cli import main

    ctx = click.Context(main)
    found = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        found.append([name])
        if isinstance(command, click.Group):
            found += [[name, sub] for sub in command.list_commands(ctx)]
    return found


def test_version_imports_nothing_heavy() -> None:
    # importlib.metadata is the one exception: it is where the version comes from.
    heavy = [m for m in HEAVY if m != "importlib.metadata"]
    result = probe(["--version"], heavy)
    assert result == {"code": 0, "imported": []}


@pytest.mark.parametrize("command", [[], *all_commands()], ids=lambda c: " ".join(c) or "main")
def test_help_of_every_command_imports_nothing_heavy(command: list[str]) -> None:
    result = probe([*command, "--help"], HEAVY)
    assert result == {"code": 0, "imported": []}


def test_the_lazy_table_lists_exactly_the_commands_the_modules_define() -> None:
    import importlib

    from invoicesync.daemon.cli import COMMANDS, main

    for entry in {c.module for c in COMMANDS.values()}:
        importlib.import_module(entry)
    assert set(main.commands) == set(COMMANDS)
    for name, lazy in COMMANDS.items():
        command = main.commands[name]
        assert command.callback is not None
        assert command.callback.__module__ == lazy.module, name
        # The summary --help shows before the module is imported is the one
        # click would make from the command's own help, at any width.
        for width in (20, 45, 80, 200):
            from_table = click.Command(name, help=lazy.summary).get_short_help_str(width)
            assert from_table == command.get_short_help_str(width), (name, width)


def test_main_help_lists_every_command_with_its_summary() -> None:
    from invoicesync.daemon.cli import COMMANDS

    result = subprocess.run(
        [sys.executable, "-m", "invoicesync.daemon.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.strip()] == sorted(COMMANDS)
    assert "  sync           Import from every source, then export to the accounts" in result.stdout


def test_the_cli_exit_code_for_busy_work_is_the_engines() -> None:
    from invoicesync.daemon.cli.common import EXIT_BUSY
    from invoicesync.daemon.engine.locks import EXIT_BUSY as ENGINE_EXIT_BUSY

    assert EXIT_BUSY == ENGINE_EXIT_BUSY


CONFIG = """version: 1
timezone: UTC
state: ./state
log: {format: json, level: warning}
sources:
  - {id: inbox, type: folder, options: {path: ./inbox}}
exports:
  - {id: archive, type: folder, filename: "{filename}.{ext}", options: {path: ./out}}
"""

# A no-op sync does its work without these: the schema check reads the
# revision with SQLAlchemy (alembic only migrates), logs are JSON (rich draws
# only on a terminal), and no configured connector needs HTTP or a keyring.
NOT_FOR_A_NOOP_SYNC = ["alembic", "rich", "httpx", "keyring", "pygments"]


def test_a_noop_sync_imports_neither_alembic_nor_rich(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"invoice-{i}.pdf").write_bytes(b"%PDF-1.4\n" + bytes([i]) * 64)
    config = write_config(tmp_path / "invoicesync.yaml", CONFIG)
    first = run_cli("sync", config=config)
    assert first.returncode == 0, first.stderr
    assert len(list((tmp_path / "out").iterdir())) == 3

    args = ["--config", str(config), "sync", "--no-fetch"]
    result = probe(args, NOT_FOR_A_NOOP_SYNC, cwd=tmp_path)
    assert result == {"code": 0, "imported": []}
    # The same run through the command line prints the same summary as ever.
    again = run_cli("sync", "--no-fetch", config=config)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "export archive: 0 exported, 0 failed, 0 rejected, 0 excluded\n"
