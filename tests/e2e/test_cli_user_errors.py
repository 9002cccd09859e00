"""Mistakes a user can make are named with file, line and a hint; never a traceback (issue 14).

Everything goes through the command line. With ``--log-format json`` a
configuration problem is exactly one ``config.invalid`` event; on a terminal
(console format) it is printed once, as text.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from fixtures.cli import command, run_cli, write_config

BASE = """version: 1
timezone: Europe/Berlin
state: ./state
companies:
  - {id: acme}
  - {id: telekom}
sources:
  - id: inbox
    type: folder
    options: {path: ./inbox, company: acme}
exports:
  - id: out
    type: folder
    options: {path: ./out}
    restrictions:
      period: {since: 2025-01-01}
"""


def _one_problem(tmp_path: Path, text: str) -> str:
    config = write_config(tmp_path / "invoicesync.yaml", text)
    result = run_cli("check-config", config=config)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # one event, printed once
    event = json.loads(lines[0])
    assert event["event"] == "config.invalid"
    (problem,) = event["problems"]
    return str(problem)


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "since: 2025-01-01",
            "since: 2025-13-01",
            "invoicesync.yaml:16: 2025-13-01 is not a valid date (month must be in 1..12)",
        ),
        (
            "{since: 2025-01-01}",
            "{between: [2025-02-30, 2025-03-31]}",
            "invoicesync.yaml:16: 2025-02-30 is not a valid date (day is out of range for month)",
        ),
        (
            "company: acme}",
            "company: acmee}",
            "invoicesync.yaml:10: sources[0].options.company: unknown company id 'acmee' "
            "(did you mean 'acme'?); declared: acme, telekom",
        ),
        (
            "options: {path: ./inbox, company: acme}",
            "options: {path: ./inbox}\n    assign_company:\n      - {company: telecom, "
            "sender: telekom.de}",
            "invoicesync.yaml:12: sources[0].assign_company[0].company: unknown company id "
            "'telecom' (did you mean 'telekom'?)",
        ),
        (
            "    restrictions:",
            "    shedule: {every: 1h}\n    restrictions:",
            "invoicesync.yaml:15: exports[0].shedule: unknown key (did you mean 'schedule'?)",
        ),
        (
            "{path: ./inbox,",
            "{path: ./inbox, recursiv: false,",
            "invoicesync.yaml:10: sources[0].options.recursiv: unknown key "
            "(did you mean 'recursive'?)",
        ),
        (
            "period: {since: 2025-01-01}",
            "period: {sinse: 2025-01-01}",
            "exports[0].restrictions.period.sinse: unknown key (did you mean 'since'?)",
        ),
        (
            "period: {since: 2025-01-01}",
            "attributes: {tags: [paid]}",
            "invoicesync.yaml:16: exports[0].restrictions.attributes.tags: expected a mapping "
            "(key: value pairs), got a list",
        ),
        (
            "period: {since: 2025-01-01}",
            "attributes: {aproved: true}",
            "exports[0].restrictions.attributes.aproved: unknown attribute check 'aproved' "
            "(did you mean 'approved'?)",
        ),
        (
            "    type: folder\n    options: {path: ./out}",
            "    type: folder\n   options: {path: ./out}",
            "invoicesync.yaml:14: invalid YAML: while parsing a block collection expected <block "
            "end>, but found '<block mapping start>' (hint: check the indentation of this line "
            "and the one above",
        ),
        (
            "timezone: Europe/Berlin",
            "timezone: Europe/Berlin\n\tlog: {level: info}",
            "invalid YAML: while scanning for the next token found character '\\t' that cannot "
            "start any token (hint: indent with spaces; YAML does not allow tabs)",
        ),
    ],
    ids=[
        "impossible-month",
        "impossible-day-in-between",
        "unknown-company-option",
        "unknown-company-rule",
        "unknown-key",
        "unknown-option-key",
        "unknown-restriction-key",
        "no-class-names",
        "unknown-attribute-check",
        "bad-indentation",
        "tab-indentation",
    ],
)
def test_user_mistakes_are_named_with_line_and_hint(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in BASE
    problem = _one_problem(tmp_path, BASE.replace(old, new, 1))
    assert expected in problem, problem
    assert "TagsConfig" not in problem and "instance of" not in problem


def test_the_base_configuration_is_valid(tmp_path: Path) -> None:
    result = run_cli("check-config", config=write_config(tmp_path / "invoicesync.yaml", BASE))
    assert result.returncode == 0, result.stderr


def test_an_internal_error_is_one_event_with_the_traceback_in_a_field(tmp_path: Path) -> None:
    """A bug (here: the runtime blows up) is reported once, pointing at the bug tracker."""
    config = write_config(tmp_path / "invoicesync.yaml", BASE)
    hook = tmp_path / "hook"
    hook.mkdir()
    # sitecustomize runs at interpreter start: it plants the bug without
    # touching the installed code.
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import invoicesync.daemon.engine.runtime as runtime

            def broken(*args, **kwargs):
                raise ZeroDivisionError("planted bug")

            runtime.open_runtime = broken
            import invoicesync.daemon.cli as cli
            cli.open_runtime = broken
            """
        )
    )
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = run_cli("sync", config=config, env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # no raw multi-line traceback
    event = json.loads(lines[0])
    assert event["event"] == "internal.error" and event["level"] == "error"
    assert event["error"] == "ZeroDivisionError: planted bug"
    assert "Traceback (most recent call last)" in event["traceback"]
    assert "raise ZeroDivisionError" in event["traceback"]
    assert "https://github.com/invoicesync/invoicesync/issues" in event["message"]
    # On a terminal (console logs) the same report is readable text.
    import subprocess

    proc = subprocess.run(
        [*command(), "--config", str(config), "--log-format", "console", "sync"],
        capture_output=True,
        text=True,
        env={**os.environ, "INVOICESYNC_PLUGINS": "", **env},
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.rstrip().endswith(
        "internal error: ZeroDivisionError: planted bug. This is a bug in invoicesync or a "
        "plugin; please report it at https://github.com/invoicesync/invoicesync/issues with "
        "the traceback"
    )
