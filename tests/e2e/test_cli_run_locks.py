"""One run per source and per account across processes, through the CLI.

Races are driven, never hoped for: the test either holds a run lock itself
(the same lock files the commands use) or pauses a command inside a plugin
hook right after its first document was committed (the test plugin's
``INVOICESYNC_TEST_PAUSE_*``), starts the second process, waits for the event
that proves it found the work busy, then lets the first one go on.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import sqlite3
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.daemon_proc import DaemonProcess, run_cli, write_config
from fixtures.smtp_server import SmtpServer
from invoicesync.daemon.engine.locks import EXIT_BUSY, FileRunLocks

Start = Callable[..., DaemonProcess]


def _config(tmp: Path, smtp: SmtpServer | None, count: int, **account: Any) -> Path:
    if smtp is not None:
        target: dict[str, Any] = {
            "id": "mailbox",
            "type": "email",
            "options": smtp.options(security="none", allow_insecure=True),
        }
    else:
        target = {"id": "mailbox", "type": "folder", "options": {"path": "./out"}}
    target.update(account)
    data = {
        "version": 1,
        "timezone": "UTC",
        "state": "./state",
        "log": {"format": "json", "level": "info"},
        "daemon": {"grace_period": "10s", "workers": 4, "jitter": "0s"},
        "sources": [{"id": "demo", "type": "demo", "options": {"count": count, "seed": 3}}],
        "exports": [target],
    }
    return write_config(tmp / "invoicesync.yaml", data)


def _message_ids(smtp: SmtpServer) -> Counter[str]:
    ids: Counter[str] = Counter()
    for received in smtp.handler.messages:
        msg = email.message_from_bytes(received.content, policy=email.policy.default)
        ids[str(msg["X-Invoicesync-Name"])] += 1
    return ids


def _pause_env(tmp: Path, stage: str) -> dict[str, str]:
    pause = tmp / "pause"
    pause.mkdir(exist_ok=True)
    return {"INVOICESYNC_TEST_PAUSE_DIR": str(pause), "INVOICESYNC_TEST_PAUSE_ON": stage}


def _wait_paused(proc: DaemonProcess, tmp: Path) -> None:
    marker = tmp / "pause" / f"paused-{proc.proc.pid}"
    proc.wait_for(lambda _events: marker.exists(), what=f"{marker.name} (the pause hook)")


def _start_paused(
    tmp: Path, env: dict[str, str], config: Path, args: list[str], stage: str
) -> DaemonProcess:
    """``invoicesync ARGS`` (stdout into ``first.txt``), stopped by the pause hook
    right after its first document was ``stage`` (committed, lock held)."""
    proc = DaemonProcess(config, {**env, **_pause_env(tmp, stage)}, args, stdout=tmp / "first.txt")
    try:
        _wait_paused(proc, tmp)
    except BaseException:
        proc.kill()
        raise
    return proc


def _go(tmp: Path) -> None:
    (tmp / "pause" / "go").write_text("")


def _ledger_counts(tmp: Path) -> dict[str, int]:
    db = sqlite3.connect(tmp / "state" / "catalog.sqlite3")
    try:
        return dict(db.execute("SELECT state, count(*) FROM ledger GROUP BY state").fetchall())
    finally:
        db.close()


# -- the test holds the lock ------------------------------------------------------------


def test_a_busy_account_is_skipped_naming_its_holder(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    config = _config(tmp_path, None, 5)
    locks = FileRunLocks(tmp_path / "state" / "locks", "sync")
    with locks.acquire("account", "mailbox"):
        result = run_cli(daemon_env, config, "sync")
        assert result.returncode == EXIT_BUSY, result.stderr
        line = next(li for li in result.stdout.splitlines() if li.startswith("export mailbox"))
        assert "skipped" in line
        assert f"invoicesync sync (pid {os.getpid()})" in line
        assert " since 20" in line and "--wait waits for it" in line
        busy = [json.loads(li) for li in result.stderr.splitlines() if '"run.busy"' in li]
        assert busy and busy[0]["account"] == "mailbox"
        assert busy[0]["holder_pid"] == os.getpid() and busy[0]["waiting"] is False
        assert not (tmp_path / "out").exists()  # nothing exported by the skipped run
        # The import was not busy: it ran.
        assert "import demo: 5 new" in result.stdout
        # The lock file is private to the service user.
        lock_file = locks.path("account", "mailbox")
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(lock_file.parent.stat().st_mode) == 0o700

        timed = run_cli(daemon_env, config, "retry", "mailbox", "--wait-timeout", "1s")
        assert timed.returncode == EXIT_BUSY
        assert "gave up after waiting 1 s" in timed.stdout
        assert _ledger_counts(tmp_path) == {}

    done = run_cli(daemon_env, config, "sync", "--no-fetch")
    assert done.returncode == 0, done.stderr
    assert "export mailbox: 5 exported" in done.stdout


def test_fetch_of_a_busy_source_is_skipped(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    config = _config(tmp_path, None, 3)
    locks = FileRunLocks(tmp_path / "state" / "locks", "run")
    with locks.acquire("source", "demo"):
        result = run_cli(daemon_env, config, "fetch")
        assert result.returncode == EXIT_BUSY
        assert result.stdout.startswith("demo: skipped — source demo is busy: invoicesync run")
    assert run_cli(daemon_env, config, "fetch").returncode == 0


# -- two processes at once ----------------------------------------------------------------


@pytest.mark.server
def test_two_syncs_at_once_mail_each_document_once(
    tmp_path: Path,
    daemon_env: dict[str, str],
    start_daemon: Start,
    smtp_factory: Callable[..., SmtpServer],
) -> None:
    smtp = smtp_factory("none")
    count = 12
    config = _config(tmp_path, smtp, count)
    first = _start_paused(tmp_path, daemon_env, config, ["sync"], "exported")
    second: DaemonProcess | None = None
    try:  # it holds the account, one mail sent
        # Without --wait the second sync leaves the account alone.
        skipped = run_cli(daemon_env, config, "sync")
        assert skipped.returncode == EXIT_BUSY, skipped.stdout + skipped.stderr
        assert f"invoicesync sync (pid {first.proc.pid})" in skipped.stdout
        # With --wait it waits for the first one, then finds nothing left to do.
        second = DaemonProcess(
            config, daemon_env, ["sync", "--wait"], stdout=tmp_path / "second.txt"
        )
        event = second.wait_event("run.busy", account="mailbox", waiting=True)
        assert event["holder_pid"] == first.proc.pid and event["holder_command"] == "sync"
        _go(tmp_path)
        assert first.proc.wait(120) == 0
        assert second.proc.wait(120) == 0
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
    assert f"export mailbox: {count} exported" in (tmp_path / "first.txt").read_text()
    assert "export mailbox: 0 exported" in (tmp_path / "second.txt").read_text()
    sent = _message_ids(smtp)
    assert len(sent) == count and set(sent.values()) == {1}, sent
    assert _ledger_counts(tmp_path) == {"exported": count}
    assert second is not None
    first.check_logs()
    second.check_logs()


@pytest.mark.server
def test_retry_while_the_daemon_exports_the_account(
    tmp_path: Path,
    daemon_env: dict[str, str],
    start_daemon: Start,
    smtp_factory: Callable[..., SmtpServer],
) -> None:
    smtp = smtp_factory("none")
    # A first sync: the server refuses one mail for good (rejected), 4 go out.
    smtp.handler.data_replies.append("554 5.7.1 attachment refused (simulated)")
    config = _config(tmp_path, smtp, 5)
    first = run_cli(daemon_env, config, "sync")
    assert first.returncode == 1 and _ledger_counts(tmp_path) == {"exported": 4, "rejected": 1}
    # 20 more documents in the catalog; the daemon's scheduled run (once at
    # its start) exports them, and pauses after the first.
    config = _config(tmp_path, smtp, 25, schedule={"every": "1h"})
    assert run_cli(daemon_env, config, "fetch").returncode == 0
    daemon = start_daemon(config, **_pause_env(tmp_path, "exported"))
    _wait_paused(daemon, tmp_path)

    refused = run_cli(daemon_env, config, "retry", "mailbox")
    assert refused.returncode == EXIT_BUSY
    assert f"invoicesync run (pid {daemon.proc.pid})" in refused.stdout
    assert _ledger_counts(tmp_path)["rejected"] == 1  # retry changed nothing

    retry = DaemonProcess(
        config, daemon_env, ["retry", "mailbox", "--wait"], stdout=tmp_path / "retry.txt"
    )
    try:
        retry.wait_event("run.busy", account="mailbox", waiting=True, holder_command="run")
        _go(tmp_path)
        assert retry.proc.wait(120) == 0
    finally:
        retry.kill()
    out = (tmp_path / "retry.txt").read_text()
    assert "mailbox: 1 document(s) queued again" in out
    assert "mailbox: 1 exported, 0 failed, 0 rejected" in out
    daemon.wait_event("export.finished", account="mailbox", exported=20)
    code, _ = daemon.stop()
    assert code == 0
    sent = _message_ids(smtp)
    assert len(sent) == 25 and set(sent.values()) == {1}, sent
    assert _ledger_counts(tmp_path) == {"exported": 25}
    daemon.check_logs()
    retry.check_logs()


def test_two_fetches_of_one_source_import_each_document_once(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    count = 15
    config = _config(tmp_path, None, count)
    first = _start_paused(tmp_path, daemon_env, config, ["fetch"], "imported")
    second: DaemonProcess | None = None
    try:  # one document committed, the source held
        second = DaemonProcess(config, daemon_env, ["fetch", "--wait"], stdout=tmp_path / "2.txt")
        second.wait_event("run.busy", source="demo", waiting=True, holder_command="fetch")
        _go(tmp_path)
        assert first.proc.wait(120) == 0
        assert second.proc.wait(120) == 0
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
    assert f"demo: {count} new" in (tmp_path / "first.txt").read_text()
    out = (tmp_path / "2.txt").read_text()
    assert "demo: 0 new" in out and "Integrity" not in out and "INSERT" not in out
    assert second is not None
    imported = [e["document"] for p in (first, second) for e in p.named("document.imported")]
    assert len(imported) == count == len(set(imported))
    first.check_logs()
    second.check_logs()
