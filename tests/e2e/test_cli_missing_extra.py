"""A connector whose optional package is missing is a configuration error (issue 14 item 5).

paramiko (the ``sftp`` extra) is installed in the test environment, so the
subprocesses hide it: a ``sitecustomize`` on PYTHONPATH puts ``None`` into
``sys.modules['paramiko']``, which makes every import of it fail exactly as if
it were not installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures.cli import Result, run_cli, write_config

CONFIG = """version: 1
state: ./state
sources:
  - id: inbox
    type: folder
    options: {path: ./inbox}
exports:
  - id: backup
    type: sftp
    options: {host: 127.0.0.1, username: me, password: env:SFTP_PW, known_hosts: ./kh}
"""


@pytest.fixture
def hidden_paramiko(tmp_path: Path) -> dict[str, str]:
    hook = tmp_path / "hide"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import sys\nsys.modules['paramiko'] = None\n")
    return {
        "PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SFTP_PW": "pw",
    }


def _only_event(result: Result) -> dict[str, object]:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    event: dict[str, object] = json.loads(lines[0])
    return event


def test_check_config_names_the_extra_to_install(
    tmp_path: Path, hidden_paramiko: dict[str, str]
) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "kh").write_text("")
    config = write_config(tmp_path / "invoicesync.yaml", CONFIG)
    for cmd in ("check-config", "sync"):
        result = run_cli(cmd, config=config, env=hidden_paramiko)
        assert result.returncode == 2, (cmd, result.stdout, result.stderr)
        event = _only_event(result)
        assert event["event"] == "config.invalid"
        assert event["problems"] == [
            f"{config}:9: exports[0].type: the sftp target needs the Python package paramiko, "
            "which is not installed: pip install 'invoicesync[sftp]'"
        ]
    # With paramiko present the same file is fine.
    ok = run_cli("check-config", config=config, env={"SFTP_PW": "pw"})
    assert ok.returncode == 0, ok.stderr


def test_plugins_shows_connectors_lacking_their_extra(hidden_paramiko: dict[str, str]) -> None:
    result = run_cli("plugins", "--json", env=hidden_paramiko)
    assert result.returncode == 0, result.stderr
    by_name = {p["name"]: p for p in json.loads(result.stdout)}
    assert by_name["sftp"]["missing"] == {"sftp": "pip install 'invoicesync[sftp]'"}
    assert by_name["folder"]["missing"] == {}
    table = run_cli("plugins", env={**hidden_paramiko, "COLUMNS": "250"})
    assert "sftp (needs: pip install 'invoicesync[sftp]')" in table.stdout, table.stdout
    present = run_cli("plugins", env={"COLUMNS": "250"})
    assert "needs:" not in present.stdout
