"""Real runs count excluded documents per check exactly like dry runs (issue 14 item 6).

Real runs let SQL drop what origins and period exclude; those documents used to
be missing from ``excluded`` (the demo's first sync said ``0 excluded`` where
the dry run said ``9 excluded (origins: 9)``).
"""

from __future__ import annotations

from pathlib import Path

from fixtures.cli import run_cli, write_config

NOW = "2026-11-30T08:00:00+01:00"


def _config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "invoicesync.yaml",
        """version: 1
timezone: Europe/Berlin
state: ./state
companies: [{id: acme}, {id: telekom}, {id: officeplus}, {id: cloudhost}, {id: railways}]
sources: [{id: demo, type: demo, options: {count: 50, seed: 42}}]
exports:
  - id: tax-adviser
    type: folder
    options: {path: ./out}
    restrictions:
      origins: {mode: exclude, companies: [railways]}
      period: {last: 12m}
      attributes: {types: [incoming_invoice, credit_note]}
""",
    )


def _export_line(stdout: str) -> str:
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("export tax-adviser:")]
    return line.split(", ", 3)[3]  # "N excluded (origins: a, period: b, ...)"


def test_a_real_sync_reports_what_the_dry_run_does(tmp_path: Path) -> None:
    config = _config(tmp_path)
    dry = run_cli("--now", NOW, "sync", "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr
    real = run_cli("--now", NOW, "sync", config=config)
    assert real.returncode == 0, real.stderr
    expected = _export_line(dry.stdout)
    assert _export_line(real.stdout) == expected
    (finished,) = real.events("export.finished")
    by = finished["excluded_by"]
    # Every kind of check excluded something: the SQL-side ones (origins,
    # period) and the one evaluated in Python (attributes.types).
    assert by["origins"] > 0 and by["period"] > 0 and by["attributes.types"] > 0, by
    assert finished["excluded"] == sum(by.values())
    assert expected.startswith(f"{finished['excluded']} excluded (")
    # The next run sees the same excluded documents again, and nothing new.
    again = run_cli("--now", NOW, "sync", config=config)
    assert _export_line(again.stdout) == expected
    assert "tax-adviser: 0 exported" in again.stdout
