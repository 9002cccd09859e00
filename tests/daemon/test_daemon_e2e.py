"""``invoicesync run`` as a subprocess: schedules, signals, systemd, retries, logs.

Schedules are second-scale; every wait polls the daemon's log or the target
folder with a bounded deadline. Each test ends with ``check_logs()``: every
line the daemon wrote is a JSON event listed in docs/monitoring.md with the
fields that document promises.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fixtures.daemon_proc import DaemonProcess, run_cli, write_config

Start = Callable[..., DaemonProcess]


def config(tmp: Path, exports: list[dict[str, Any]], every: str = "1s", **daemon: Any) -> Path:
    (tmp / "inbox").mkdir(exist_ok=True)
    data = {
        "version": 1,
        "timezone": "UTC",
        "state": "./state",
        "log": {"format": "json", "level": "info"},
        "daemon": {"grace_period": "10s", "workers": 4, "jitter": "0s", **daemon},
        "sources": [
            {
                "id": "inbox",
                "type": "folder",
                "schedule": {"every": every},
                "options": {"path": "./inbox"},
            }
        ],
        "exports": exports,
    }
    return write_config(tmp / "invoicesync.yaml", data)


def account(
    ident: str, kind: str = "folder", schedule: Any = None, **options: Any
) -> dict[str, Any]:
    return {
        "id": ident,
        "type": kind,
        "schedule": schedule or {"after_import": True},
        "filename": "{filename}.{ext}",
        "options": {"path": f"./{ident}", **options},
    }


def wait_files(d: DaemonProcess, folder: Path, names: set[str], timeout: float = 45) -> None:
    def present(_events: Any) -> bool:
        return folder.is_dir() and names <= {p.name for p in folder.iterdir()}

    d.wait_for(present, timeout, what=f"{sorted(names)} in {folder}")


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def status(env: dict[str, str], cfg: Path) -> dict[str, dict[str, Any]]:
    result = run_cli(env, cfg, "status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["account"]: row for row in json.loads(result.stdout)}


def exported_per_document(*daemons: DaemonProcess, account_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in daemons:
        for event in d.named("document.exported"):
            if event["account"] == account_id:
                counts[event["document"]] = counts.get(event["document"], 0) + 1
    return counts


def test_dropped_documents_reach_the_targets(
    tmp_path: Path,
    start_daemon: Start,
    daemon_env: dict[str, str],
) -> None:
    cfg = config(
        tmp_path,
        [account("follow"), account("poll", schedule={"every": "1s"})],
    )
    d = start_daemon(cfg)
    d.wait_event("daemon.started")
    files = {"inv-1.pdf": b"%PDF-1.4 first", "inv-2.pdf": b"%PDF-1.4 second"}
    for name, data in files.items():
        (tmp_path / "inbox" / name).write_bytes(data)
    wait_files(d, tmp_path / "follow", set(files))
    wait_files(d, tmp_path / "poll", set(files))
    for name, data in files.items():
        assert (tmp_path / "follow" / name).read_bytes() == data
        assert (tmp_path / "poll" / name).read_bytes() == data

    # The ledger commits right after the file lands: wait for the log line.
    d.wait_for(
        lambda _e: (
            exported_per_document(d, account_id="follow")
            == {
                "inbox/inv-1.pdf": 1,
                "inbox/inv-2.pdf": 1,
            }
        ),
        what="both documents logged as exported",
    )
    rows = status(daemon_env, cfg)
    assert rows["follow"]["exported"] == 2 and rows["follow"]["pending"] == 0
    assert rows["follow"]["daemon_running"] is True
    assert rows["follow"]["last_result"] == "ok"
    # The daemon publishes real next fire times: the next import for an
    # after_import account, the account's own job otherwise.
    assert rows["poll"]["next_run"] is not None and rows["follow"]["next_run"] is not None

    code, _ = d.stop()
    assert code == 0
    assert d.named("daemon.stopped")[-1]["clean"] is True
    d.check_logs()
    assert not (tmp_path / "state" / "daemon-schedule.json").exists()


def test_sighup_reschedules_and_survives_a_broken_file(tmp_path: Path, start_daemon: Start) -> None:
    hourly = {"every": "1h"}
    cfg = config(tmp_path, [account("out"), account("old", schedule=hourly)], every="1h")
    d = start_daemon(cfg)
    # The start-up runs; the next ones would be in an hour.
    d.wait_event("import.finished")
    d.wait_event("export.finished", account="old")

    new_exports = [account("out"), account("new", schedule={"every": "1s"})]
    config(tmp_path, new_exports, every="1s")
    d.signal(signal.SIGHUP)
    reloaded = d.wait_event("daemon.reloaded")
    assert reloaded["rescheduled"] == ["import:inbox"]
    assert reloaded["added"] == ["export:new"]
    assert reloaded["removed"] == ["export:old"]
    (tmp_path / "inbox" / "a.pdf").write_bytes(b"A")
    wait_files(d, tmp_path / "out", {"a.pdf"})
    wait_files(d, tmp_path / "new", {"a.pdf"})
    assert not (tmp_path / "old" / "a.pdf").exists()  # its job is gone

    good = cfg.read_text()
    cfg.write_text(good.replace('"every": "1s"', '"every": "soon"'))
    d.signal(signal.SIGHUP)
    invalid = d.wait_event("config.invalid")
    assert "sources[0].schedule.every" in " ".join(invalid["problems"])
    assert invalid["action"] == "kept the running configuration"
    # Still running, on the old (every 1s) configuration.
    (tmp_path / "inbox" / "b.pdf").write_bytes(b"B")
    wait_files(d, tmp_path / "out", {"b.pdf"})
    assert d.proc.poll() is None
    assert len(d.named("daemon.reloaded")) == 1

    code, _ = d.stop()
    assert code == 0
    d.check_logs()


def test_sigterm_mid_export_exits_in_grace_and_restart_completes(
    tmp_path: Path,
    start_daemon: Start,
    daemon_env: dict[str, str],
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    big = os.urandom(3 * 1024 * 1024)
    (inbox / "big.pdf").write_bytes(big)
    (inbox / "small-1.pdf").write_bytes(b"one")
    (inbox / "small-2.pdf").write_bytes(b"two")
    out = tmp_path / "slow"
    # 48 chunks of 64 KiB, 100 ms apart: about 5 s for the big document.
    cfg = config(tmp_path, [account("slow", "slow", chunk=65536, delay=0.1)])
    d1 = start_daemon(cfg)
    d1.wait_for(
        lambda _e: (out / ".writing").exists() and (out / ".writing").read_text() == "big.pdf",
        what="the big export to start",
    )
    code, took = d1.stop()
    assert code == 0
    assert took < 10, f"exit took {took:.1f}s, grace period is 10s"
    abandoned = d1.named("document.abandoned")
    assert [e["document"] for e in abandoned] == ["inbox/big.pdf"]
    assert not (out / "big.pdf").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    d1.check_logs()

    cfg = config(tmp_path, [account("slow", "slow", chunk=65536, delay=0)])
    d2 = start_daemon(cfg)
    wait_files(d2, out, {"big.pdf", "small-1.pdf", "small-2.pdf"})
    d2.wait_event("export.finished", account="slow", failed=0)
    code, _ = d2.stop()
    assert code == 0
    d2.check_logs()

    assert (out / "big.pdf").read_bytes() == big
    assert visible(out) == {"big.pdf", "small-1.pdf", "small-2.pdf"}  # nothing doubled
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    per_doc = exported_per_document(d1, d2, account_id="slow")
    assert per_doc == {"inbox/big.pdf": 1, "inbox/small-1.pdf": 1, "inbox/small-2.pdf": 1}
    row = status(daemon_env, cfg)["slow"]
    assert (row["exported"], row["pending"], row["failed"]) == (3, 0, 0)


def test_grace_period_bounds_a_connector_that_ignores_stop(
    tmp_path: Path,
    start_daemon: Start,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "big.pdf").write_bytes(os.urandom(2 * 1024 * 1024))
    out = tmp_path / "slow"
    stuck = account("slow", "slow", chunk=65536, delay=0.5, ignore_stop=True)  # ~16 s
    cfg = config(tmp_path, [stuck], grace_period="1s")
    d1 = start_daemon(cfg)
    d1.wait_for(lambda _e: (out / ".writing").exists(), what="the export to start")
    code, took = d1.stop()
    assert code == 0
    # Well before the stuck export would have ended by itself.
    assert took < 8, f"exit took {took:.1f}s with a 1s grace period"
    stopped = d1.named("daemon.stopped")[-1]
    assert stopped["clean"] is False and stopped["abandoned"] == ["export:slow"]
    d1.check_logs()

    cfg = config(tmp_path, [account("slow", "slow", delay=0)])
    d2 = start_daemon(cfg)
    wait_files(d2, out, {"big.pdf"})
    d2.stop()
    assert visible(out) == {"big.pdf"}
    assert exported_per_document(d1, d2, account_id="slow") == {"inbox/big.pdf": 1}


def test_notify_socket_gets_ready_watchdog_status_stopping(
    tmp_path: Path,
    start_daemon: Start,
) -> None:
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                messages.append(server.recv(4096).decode())
            except TimeoutError:
                continue

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        cfg = config(tmp_path, [account("out")])
        d = start_daemon(cfg, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="400000")

        def first(pred: Callable[[str], bool]) -> int:
            return next((i for i, m in enumerate(list(messages)) if pred(m)), -1)

        d.wait_for(lambda _e: first(lambda m: "WATCHDOG=1" in m) >= 0, what="WATCHDOG=1")
        (tmp_path / "inbox" / "x.pdf").write_bytes(b"X")
        d.wait_for(
            lambda _e: first(lambda m: "last run: export out ok (1 exported" in m) >= 0,
            what="STATUS with the export's summary",
        )
        code, _ = d.stop()
        assert code == 0
        d.wait_for(lambda _e: first(lambda m: "STOPPING=1" in m) >= 0, 5, "STOPPING=1")
    finally:
        done.set()
        thread.join(2)
        server.close()
    ready = first(lambda m: "READY=1" in m.split("\n"))
    watchdog = first(lambda m: "WATCHDOG=1" in m)
    summary = first(lambda m: "STATUS=" in m and "last run: export out ok (1 exported" in m)
    stopping = first(lambda m: "STOPPING=1" in m)
    assert ready == 0, messages[:3]
    assert ready < watchdog < summary < stopping, messages
    assert "1 exported, 0 failed, 0 rejected" in messages[summary]
    assert sum("WATCHDOG=1" in m for m in messages) >= 2  # pinged repeatedly
    assert not any("READY=1" in m for m in messages[stopping:])
    d.check_logs()


def test_transient_errors_retry_and_permanent_refusals_reject(
    tmp_path: Path,
    start_daemon: Start,
    daemon_env: dict[str, str],
) -> None:
    flaky = account("flaky", "flaky", fail_times=2)
    flaky["retry"] = {"attempts": 4, "initial": "0.1s", "max": "0.4s"}
    refuse = account("refuse", "refuse")
    refuse["retry"] = {"attempts": 2, "initial": "0.1s", "max": "0.4s"}
    (tmp_path / "refuse").mkdir()
    (tmp_path / "refuse" / ".refuse").touch()
    cfg = config(tmp_path, [flaky, refuse])
    (tmp_path / "inbox" / "inv.pdf").write_bytes(b"%PDF-1.4 invoice")
    d = start_daemon(cfg)

    d.wait_event("export.finished", account="flaky", exported=1)
    rejected = d.wait_event("document.rejected", account="refuse")
    assert rejected["document"] == "inbox/inv.pdf"
    assert "quota exceeded" in rejected["reason"]

    attempts = json.loads((tmp_path / "flaky" / ".attempts.json").read_text())
    assert attempts == {"inv.pdf": 3}  # failed twice, then succeeded
    retrying = [e for e in d.named("document.retrying") if e["account"] == "flaky"]
    assert [e["attempt"] for e in retrying] == [1, 2]
    assert all("connection refused" in e["error"] for e in retrying)
    assert exported_per_document(d, account_id="flaky") == {"inbox/inv.pdf": 1}
    assert visible(tmp_path / "flaky") == {"inv.pdf"}
    assert not d.named("document.failed")

    rows = status(daemon_env, cfg)
    assert (rows["flaky"]["exported"], rows["flaky"]["failed"]) == (1, 0)
    assert (rows["refuse"]["rejected"], rows["refuse"]["exported"]) == (1, 0)

    # The operator fixes the cause and puts the rejected document back in line.
    (tmp_path / "refuse" / ".refuse").unlink()
    result = run_cli(daemon_env, cfg, "retry", "refuse")
    assert result.returncode == 0, result.stderr
    assert "1 document(s) queued again" in result.stdout
    wait_files(d, tmp_path / "refuse", {"inv.pdf"})
    code, _ = d.stop()
    assert code == 0
    d.check_logs()
    rows = status(daemon_env, cfg)
    assert (rows["refuse"]["rejected"], rows["refuse"]["exported"]) == (0, 1)
