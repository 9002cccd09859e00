"""Inputs at the edges are answered, never crash (issue 10 item 13).

A NUL character in a path (the state folder, a folder source or target, the
database URL) is a configuration error with file:line, found by
``check-config`` already; ``--now`` near the ends of the calendar is a usage
error; durations too long for date arithmetic are configuration errors.
Each exits 2 without a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.cli import Result, run_cli, write_config

CONFIG = """version: 1
timezone: UTC
state: {state}
{database}
sources:
  - id: inbox
    type: folder
    schedule: {{every: {every}}}
    options: {{path: {inbox}}}
exports:
  - id: out
    type: folder
    retry: {{initial: 1s, max: {retry_max}}}
    restrictions: {{period: {{preset: previous_quarter}}}}
    options: {{path: {out}}}
"""


def setup(tmp_path: Path, **values: str) -> Path:
    fields = {
        "state": "./state",
        "database": "",
        "every": "1h",
        "inbox": "./inbox",
        "retry_max": "5m",
        "out": "./out",
        **values,
    }
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "inbox" / "a.pdf").write_bytes(b"%PDF-1.4 a")
    return write_config(tmp_path / "invoicesync.yaml", CONFIG.format(**fields))


def assert_usage_error(result: Result, pattern: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert re.search(pattern, result.stderr), result.stderr


@pytest.mark.parametrize(
    "field, value, where",
    [
        ("state", '"./st\\0ate"', r"invoicesync\.yaml:3: state: "),
        ("inbox", '"./in\\0box"', r"invoicesync\.yaml:9: sources\[0\]\.options\.path: "),
        ("out", '"./o\\0ut"', r"invoicesync\.yaml:15: exports\[0\]\.options\.path: "),
    ],
)
def test_a_nul_in_a_path_is_a_configuration_error(
    tmp_path: Path, field: str, value: str, where: str
) -> None:
    cfg = setup(tmp_path, **{field: value})
    for command in ("check-config", "sync") if field == "state" else ("check-config",):
        result = run_cli(command, config=cfg)
        assert_usage_error(result, where + "a path cannot contain a NUL character")
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ('database: "sqlite:////tmp/cat\\0alog.sqlite3"', "database: a database URL"),
        ('blobs: "./bl\\0obs"', "blobs: a path or URL"),
    ],
)
def test_a_nul_in_the_database_url_or_blobs_is_a_configuration_error(
    tmp_path: Path, line: str, message: str
) -> None:
    cfg = setup(tmp_path, database=line)
    result = run_cli("check-config", config=cfg)
    assert_usage_error(
        result, r"invoicesync\.yaml:4: " + message + " cannot contain a NUL character"
    )


@pytest.mark.parametrize(
    "now",
    [
        "9999-12-31T23:59:59+00:00",
        "9999-12-31T00:00:00+14:00",
        "0001-01-01T00:00:00+00:00",
        "0001-01-01T00:00:00-05:00",
    ],
)
def test_now_at_the_ends_of_the_calendar_is_a_usage_error(tmp_path: Path, now: str) -> None:
    cfg = setup(tmp_path)
    commands: list[tuple[str, ...]] = [("sync",)]
    if now.startswith("9999-12-31T23"):  # one value is enough to try every command
        commands += [("status",), ("explain", "out", "inbox/a.pdf"), ("run",)]
    for command in commands:
        result = run_cli("--now", now, *command, config=cfg, timeout=60)
        assert_usage_error(
            result,
            re.escape(f"--now must lie between 1900-01-01 and 9000-01-01, not {now}"),
        )
    assert not (tmp_path / "out").exists()


def test_now_inside_the_range_works_at_both_ends(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    for now in ("1900-01-01T00:00:00+00:00", "8999-12-31T00:00:00+14:00"):
        result = run_cli("--now", now, "sync", config=cfg)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        result = run_cli("--now", now, "explain", "out", "inbox/a.pdf", config=cfg)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("duration", ["99999999999d", "99999999d", "1e400"])
def test_durations_too_long_for_date_arithmetic_are_configuration_errors(
    tmp_path: Path, duration: str
) -> None:
    cfg = setup(tmp_path, every=duration, retry_max=duration)
    result = run_cli("check-config", config=cfg)
    assert_usage_error(
        result,
        r"invoicesync\.yaml:8: sources\[0\]\.schedule\.every: a duration cannot be longer "
        r"than 36500d \(100 years\)",
    )
    assert re.search(r"invoicesync\.yaml:13: exports\[0\]\.retry\.max: ", result.stderr)
