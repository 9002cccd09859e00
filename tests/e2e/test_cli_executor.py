"""The executor setting through the CLI: what a single machine gets told."""

from __future__ import annotations

from pathlib import Path

from fixtures.cli import run_cli, write_config

BASE = """version: 1
timezone: UTC
state: ./state
{extra}
sources:
  - {{id: demo, type: demo, options: {{count: 2}}}}
exports:
  - {{id: out, type: folder, options: {{path: ./out}}}}
"""


def test_procrastinate_without_postgresql_is_a_configuration_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", BASE.format(extra="executor: procrastinate"))
    result = run_cli("check-config", config=config)
    assert result.returncode == 2
    assert "executor: procrastinate keeps its jobs in PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_worker_needs_the_procrastinate_executor(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", BASE.format(extra=""))
    result = run_cli("worker", config=config, timeout=60)
    assert result.returncode == 2
    problems = result.events("config.invalid")[0]["problems"]
    assert "`invoicesync worker` and `run --no-work` need `executor: procrastinate`" in problems[0]
    assert not (tmp_path / "out").exists()


def test_blobs_in_another_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", BASE.format(extra="blobs: ./shared/blobs"))
    result = run_cli("sync", config=config)
    assert result.returncode == 0, result.stderr
    stored = [p for p in (tmp_path / "shared" / "blobs").rglob("*") if p.is_file()]
    assert len([p for p in stored if len(p.name) == 64]) == 2
    assert not (tmp_path / "state" / "blobs").exists()
