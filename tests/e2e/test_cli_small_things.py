"""Small things people reach for on the first day (issue 14 item 8), through the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from fixtures.cli import command, run_cli, write_config
from fixtures.http_faults import FaultServer
from helpers import require_program

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pipe-d S3cret with spaces"


def test_dash_capital_v_prints_the_version() -> None:
    from invoicesync.daemon import __version__

    for flag in ("-V", "--version"):
        result = run_cli(flag)
        assert result.returncode == 0
        assert result.stdout.strip() == f"invoicesync, version {__version__}"


def test_status_json_timestamps_are_iso_8601_with_t(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "invoicesync.yaml",
        """version: 1
state: ./state
companies: [{id: acme}, {id: telekom}, {id: officeplus}, {id: cloudhost}, {id: railways}]
sources: [{id: demo, type: demo, options: {count: 3}}]
exports: [{id: archive, type: folder, options: {path: ./out}}]
""",
    )
    assert run_cli("sync", config=config).returncode == 0
    result = run_cli("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)", row["last_run"])
    assert datetime.fromisoformat(row["last_run"]).tzinfo is not None
    docs = run_cli("documents", "--json", config=config)
    for line in docs.stdout.splitlines():
        document = json.loads(line)
        assert " " not in str(document.get("imported_at", ""))


def _keyring_env(tmp_path: Path, backend: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": backend,
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def test_secret_set_reads_the_value_from_a_pipe(tmp_path: Path) -> None:
    env = _keyring_env(tmp_path, "keyrings.alt.file.PlaintextKeyring")
    proc = subprocess.run(
        [*command(), "secret", "set", "--allow-insecure-keyring", "portal-token"],
        input=SECRET,  # printf %s "$PW" | invoicesync secret set NAME
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Secret for" not in proc.stdout + proc.stderr  # no prompt off a terminal
    stored = subprocess.run(
        [
            sys.executable,
            "-c",
            "import keyring; print(keyring.get_password('invoicesync', 'portal-token'))",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert stored == SECRET + "\n"


def test_secret_set_without_a_keyring_backend_fails_before_asking(tmp_path: Path) -> None:
    env = _keyring_env(tmp_path, "keyring.backends.fail.Keyring")
    for stdin in (SECRET, ""):
        proc = subprocess.run(
            [*command(), "secret", "set", "portal-token"],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 2
        assert proc.stderr == (
            "error: cannot store secret 'portal-token': no keyring backend on this machine "
            "(typical for a headless server); use env:VAR or credential:NAME in the "
            "configuration instead (see docs/secrets.md)\n"
        )
        assert proc.stdout == ""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_is_documented_and_works(shell: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"_INVOICESYNC_COMPLETE={shell}_source invoicesync" in readme
    proc = subprocess.run(
        command(),
        env={**os.environ, "_INVOICESYNC_COMPLETE": f"{shell}_source"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "_INVOICESYNC_COMPLETE" in proc.stdout


APACHE_403 = b"""<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>403 Forbidden</title>
</head><body>
<h1>Forbidden</h1>
<p>You don't have permission to access this resource.</p>
<hr>
<address>Apache/2.4.62 (Debian) Server at 127.0.0.1 Port 80</address>
</body></html>
"""


def test_rclone_errors_carry_no_html_of_the_servers_error_page(
    tmp_path: Path, fault_server: FaultServer
) -> None:
    rclone = require_program("rclone", "rclone")
    from fixtures.rclone_remotes import write_config as write_rclone_config

    fault_server.set(403, {"Content-Type": "text/html"}, APACHE_403)
    rclone_conf = write_rclone_config(
        tmp_path / "rclone.conf",
        rclone,
        {"dav": {"type": "webdav", "url": fault_server.url, "vendor": "other"}},
    )
    config = write_config(
        tmp_path / "invoicesync.yaml",
        f"""version: 1
state: ./state
exports:
  - id: cloud
    type: rclone
    options: {{remote: "dav:docs", config: {rclone_conf}}}
""",
    )
    result = run_cli("check-config", "--connect", config=config, env={"COLUMNS": "400"})
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "export cloud" in ln)
    assert "(server error page: 403 Forbidden)" in line, line
    assert "<" not in line and "Apache/2.4.62" not in line, line
