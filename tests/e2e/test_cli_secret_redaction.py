"""Secrets in stored and printed text (issue 10 item 6), through the command line.

* A server reply that echoes the credentials -- plain, as HTTP basic auth
  (`base64(user:pw)`), as SASL PLAIN (`base64(\\0user\\0pw)`) or URL-encoded -- is
  masked in the ledger's last_error, in the runs table, in `explain`, in
  `sync` and in `check-config --connect` output, not only in log lines.
* A secret too short to mask safely (`2026`) is not masked inside unrelated
  text (timestamps, event names); `check-config` warns about it instead.
* The state folder is 0700 and its files 0600 whatever the umask.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from fixtures.cli import command, run_cli
from fixtures.http_faults import (
    FaultServer,
    fault_server_fixture,  # noqa: F401
)

USER = "alice"
SECRET = "Sup3r/Secret+Value"
FORMS = {
    "plain": SECRET,
    "basic": base64.b64encode(f"{USER}:{SECRET}".encode()).decode(),
    "sasl": base64.b64encode(f"\0{USER}\0{SECRET}".encode()).decode(),
    "url": urllib.parse.quote(SECRET, safe=""),
}


def _config(tmp_path: Path, url: str) -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "inbox" / "a.pdf").write_bytes(b"%PDF-1.4 a\n")
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        "version: 1\n"
        "state: ./state\n"
        "sources:\n"
        "  - {id: inbox, type: folder, options: {path: ./inbox}}\n"
        "exports:\n"
        "  - id: cloud\n"
        "    type: webdav\n"
        "    retry: {attempts: 1}\n"
        "    options:\n"
        f"      url: {url}\n"
        f"      username: {USER}\n"
        "      password: env:DAV_PASSWORD\n"
        "      timeout: 5s\n",
        encoding="utf-8",
    )
    return config


def _leaks(text: str) -> list[str]:
    return [name for name, form in FORMS.items() if form in text]


def test_a_reply_echoing_credentials_is_masked_where_stored_and_printed(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    echo = " ".join(f"{name}={form}" for name, form in FORMS.items())
    fault_server.set(
        403,
        {"Content-Type": "application/xml; charset=utf-8"},
        (
            '<?xml version="1.0" encoding="utf-8"?><d:error xmlns:d="DAV:" '
            'xmlns:s="http://sabredav.org/ns"><s:message>denied: '
            f"{echo}</s:message></d:error>"
        ).encode(),
    )
    config = _config(tmp_path, fault_server.url)
    env = {"DAV_PASSWORD": SECRET}

    synced = run_cli("sync", config=config, env=env, cwd=tmp_path)
    assert synced.returncode == 1
    assert "denied:" in synced.stderr  # the server's message itself is kept...
    assert _leaks(synced.stdout + synced.stderr) == []  # ...without the credentials

    db = sqlite3.connect(tmp_path / "state" / "catalog.sqlite3")
    stored = [r[0] for r in db.execute("SELECT last_error FROM ledger") if r[0]]
    stored += [r[0] for r in db.execute("SELECT error FROM runs") if r[0]]
    db.close()
    assert any("denied:" in text for text in stored), stored
    assert _leaks("\n".join(stored)) == []

    explained = run_cli("explain", "cloud", "inbox/a.pdf", config=config, env=env, cwd=tmp_path)
    assert "denied:" in explained.stdout
    assert _leaks(explained.stdout + explained.stderr) == []

    connect = run_cli("check-config", "--connect", config=config, env=env, cwd=tmp_path)
    assert connect.returncode == 1
    assert "denied:" in connect.stdout
    assert _leaks(connect.stdout + connect.stderr) == []


def test_a_short_secret_is_warned_about_not_masked_inside_other_text(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.set(500)
    config = _config(tmp_path, fault_server.url)
    env = {"DAV_PASSWORD": "2026"}
    checked = run_cli("check-config", config=config, env=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "warning: " in checked.stderr
    assert "exports[0].options.password" in checked.stderr
    assert "shorter than 8 characters" in checked.stderr

    synced = run_cli("sync", config=config, env=env, cwd=tmp_path)
    events = synced.events()
    assert events
    assert all(e["timestamp"].startswith("20") for e in events), synced.stderr[:500]
    assert "***" not in synced.stderr
    assert any(e["event"] == "document.imported" for e in events)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_state_folder_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.pdf").write_bytes(b"%PDF-1.4 a\n")
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        "version: 1\nstate: ./state\n"
        "sources:\n  - {id: inbox, type: folder, options: {path: ./inbox}}\n"
        "exports:\n  - {id: out, type: folder, options: {path: ./out}}\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [*command(), "--config", str(config), "sync"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        preexec_fn=lambda: os.umask(umask),
    )
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    loose = []
    for folder, _dirs, names in os.walk(state):
        for name in names:
            mode = stat.S_IMODE(os.lstat(os.path.join(folder, name)).st_mode)
            if mode & 0o077:
                loose.append(f"{os.path.relpath(os.path.join(folder, name), state)} {mode:o}")
    assert loose == [], loose
    assert any((state / "blobs").rglob("*")), "the test must have stored a blob"
