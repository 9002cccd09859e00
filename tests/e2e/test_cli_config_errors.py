"""A broken configuration exits 2 and names the file, the line and the value's path."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.cli import run_cli, write_config

VALID = """version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - id: inbox
    type: folder
    options: {path: ./inbox}
exports:
  - id: out
    type: folder
    schedule: {every: 1h}
    options: {path: ./out}
"""


@pytest.mark.parametrize(
    "broken, expected",
    [
        (
            VALID.replace(
                "    type: folder\n    options: {path: ./inbox}",
                "    type: folder\n    options: {path: [./inbox",
            ),
            r"invoicesync\.yaml:\d+: invalid YAML",
        ),
        (
            VALID.replace("timezone: Europe/Berlin", "timezone: Europe/Berlin\nsurprise: 1"),
            r"invoicesync\.yaml:3: surprise: unknown key",
        ),
        (
            VALID.replace("{every: 1h}", "{every: soon}"),
            r"invoicesync\.yaml:11: exports\[0\]\.schedule\.every: expected a duration",
        ),
        (
            VALID.replace(
                "    type: folder\n    schedule", "    type: dropbox-magic\n    schedule"
            ),
            r"invoicesync\.yaml:10: exports\[0\]\.type: unknown target type 'dropbox-magic'",
        ),
        (
            VALID.replace("options: {path: ./inbox}", "options: {path: ./inbox, recursive: maybe}"),
            r"invoicesync\.yaml:7: sources\[0\]\.options\.recursive: ",
        ),
        (
            VALID.replace("options: {path: ./out}", "options: {path: ./out, colour: red}"),
            r"invoicesync\.yaml:12: exports\[0\]\.options\.colour: unknown key",
        ),
        (
            VALID.replace("timezone: Europe/Berlin", "timezone: Mars/Olympus"),
            r"invoicesync\.yaml:2: timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            VALID + "  - id: out\n    type: folder\n    options: {path: ./x}\n",
            # At the duplicate's own line, not line 1.
            r"invoicesync\.yaml:13: exports\[1\]\.id: id 'out' is used twice \(first at line 9\)",
        ),
    ],
    ids=[
        "bad-yaml",
        "unknown-key",
        "wrong-type",
        "unknown-connector",
        "bad-option",
        "unknown-option",
        "bad-timezone",
        "duplicate-id",
    ],
)
def test_broken_config_exits_2_with_file_line_and_path(
    tmp_path: Path, broken: str, expected: str
) -> None:
    config = write_config(tmp_path / "invoicesync.yaml", broken)
    for command in ("check-config", "sync"):
        result = run_cli(command, config=config)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert pytest.importorskip("re").search(expected, result.stderr), result.stderr
        assert result.events("config.invalid")
    assert not (tmp_path / "state").exists()  # nothing ran


def test_valid_config_checks_ok(tmp_path: Path) -> None:
    result = run_cli("check-config", config=write_config(tmp_path / "invoicesync.yaml", VALID))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("check-config", config=tmp_path / "nope.yaml")
    assert result.returncode == 2 and "file not found" in result.stderr
