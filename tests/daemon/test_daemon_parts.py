"""The daemon's parts in-process: triggers and windows, sd_notify, the next-run
file, the no-overlap/rerun bookkeeping, and the monitoring doc's contract."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from fixtures.daemon_proc import MONITORING_DOC, documented_events
from helpers import skip_or_fail
from invoicesync.daemon.config.models import ScheduleConfig, WindowConfig
from invoicesync.daemon.scheduler.jobs import Jobs
from invoicesync.daemon.scheduler.nextruns import read_schedule, remove_schedule, write_schedule
from invoicesync.daemon.scheduler.systemd import Notifier, watchdog_interval
from invoicesync.daemon.scheduler.triggers import (
    Window,
    WindowedTrigger,
    build_trigger,
    effective_jitter,
)

BERLIN = ZoneInfo("Europe/Berlin")


# -- windows and triggers ------------------------------------------------------------


def test_window_contains_and_next_opening() -> None:
    w = Window(WindowConfig(days=["mon-fri"], hours="08-18"), BERLIN)
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=BERLIN)  # a Friday
    assert not w.contains(friday_evening)
    assert w.contains(friday_evening - timedelta(minutes=1))
    assert w.next_opening(friday_evening) == datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN)
    early_tuesday = datetime(2026, 12, 1, 6, 30, tzinfo=BERLIN)
    assert w.next_opening(early_tuesday) == datetime(2026, 12, 1, 8, 0, tzinfo=BERLIN)
    # Given in UTC, judged in the configured zone: 07:30 UTC is 08:30 in Berlin.
    assert w.contains(datetime(2026, 12, 1, 7, 30, tzinfo=UTC))


def test_window_over_the_weekend_and_empty() -> None:
    w = Window(WindowConfig(days=["fri-mon"], hours="00-24"), BERLIN)
    assert w.days == {4, 5, 6, 0}
    wednesday = datetime(2026, 12, 2, 12, 0, tzinfo=BERLIN)
    assert w.next_opening(wednesday) == datetime(2026, 12, 4, 0, 0, tzinfo=BERLIN)
    never = Window(WindowConfig(days=[], hours="08-18"), BERLIN)
    assert never.next_opening(wednesday) is None


def test_windowed_interval_trigger_skips_to_the_opening_and_keeps_its_rhythm() -> None:
    start = datetime(2026, 11, 27, 17, 0, tzinfo=BERLIN)  # Friday 17:00
    inner = IntervalTrigger(minutes=25, start_date=start, timezone=BERLIN)
    trigger = WindowedTrigger(inner, Window(WindowConfig(days=["mon-fri"], hours="08-18"), BERLIN))
    fires = []
    previous = None
    now = start
    for _ in range(5):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire)
        previous = now = fire
    assert fires[:3] == [
        start,
        start + timedelta(minutes=25),
        start + timedelta(minutes=50),
    ]
    # 17:75 = 18:15 is outside: next is the first 25-minute tick from Monday 08:00.
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN)
    assert monday <= fires[3] < monday + timedelta(minutes=25)
    assert (fires[3] - start) % timedelta(minutes=25) == timedelta(0)
    assert fires[4] == fires[3] + timedelta(minutes=25)


def test_build_trigger_cron_in_timezone_with_window_and_jitter_cap() -> None:
    cron = ScheduleConfig(cron="30 6 * * *", window=WindowConfig(days=["sat-sun"]))
    trigger = build_trigger(cron, BERLIN, timedelta(seconds=0))
    friday = datetime(2026, 11, 27, 12, 0, tzinfo=BERLIN)
    assert trigger.get_next_fire_time(None, friday) == datetime(2026, 11, 28, 6, 30, tzinfo=BERLIN)
    assert (
        effective_jitter(ScheduleConfig(every=timedelta(seconds=2)), timedelta(seconds=5)) is None
    )
    assert effective_jitter(ScheduleConfig(every=timedelta(hours=1)), timedelta(seconds=5)) == 5
    assert effective_jitter(ScheduleConfig(cron="0 6 * * *"), timedelta(seconds=30)) == 30
    with pytest.raises(ValueError):
        build_trigger(ScheduleConfig(after_import=True), BERLIN, timedelta(0))


# -- sd_notify --------------------------------------------------------------------------


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_notifier_path_and_abstract_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with _receiver(str(path)) as rx:
        n = Notifier({"NOTIFY_SOCKET": str(path)})
        assert n.ready("up\nand running")
        assert rx.recv(1024) == b"READY=1\nSTATUS=up and running"  # one line, always
        assert n.watchdog()
        assert rx.recv(1024) == b"WATCHDOG=1"
        assert n.reloading()
        assert re.fullmatch(
            rb"RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading configuration", rx.recv(1024)
        )
        n.close()
    name = f"invoicesync-test-{uuid.uuid4().hex}"
    with _receiver(b"\0" + name.encode()) as rx:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.stopping("bye")
        assert rx.recv(1024) == b"STOPPING=1\nSTATUS=bye"
        n.close()


def test_notifier_disabled_or_broken_is_harmless(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).ready() is False
    assert Notifier({"NOTIFY_SOCKET": "vsock:2:1"}).enabled is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert gone.status("x") is False  # logged once as systemd.notify_failed, no exception
    assert gone.status("y") is False


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


# -- the next-run file ----------------------------------------------------------------------


def test_schedule_file_round_trip_and_dead_daemon(tmp_path: Path) -> None:
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    jobs: dict[str, datetime | None] = {
        "import:a": now + timedelta(minutes=5),
        "import:b": now + timedelta(minutes=1),
        "export:x": now + timedelta(hours=1),
        "export:paused": None,
    }
    write_schedule(tmp_path, jobs, now)
    schedule = read_schedule(tmp_path)
    assert schedule is not None
    assert schedule.jobs == jobs
    assert schedule.next_import() == now + timedelta(minutes=1)
    # A file left behind by a daemon that is gone is ignored.
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_schedule(tmp_path, jobs, now, pid=dead.pid)
    assert read_schedule(tmp_path) is None
    (tmp_path / "daemon-schedule.json").write_text("{not json")
    assert read_schedule(tmp_path) is None
    remove_schedule(tmp_path)
    remove_schedule(tmp_path)  # idempotent
    assert read_schedule(tmp_path) is None


# -- no overlap, reruns -------------------------------------------------------------------


class _Host:
    """A JobHost whose runs block until released, to observe overlap."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.submitted: list[tuple[Any, list[Any]]] = []

    @property
    def runtime(self) -> Any:
        raise AssertionError("not used")

    def submit(self, func: Any, args: list[Any], name: str) -> None:
        self.submitted.append((func, args))

    def run_finished(self, kind: str, subject: str, summary: Any) -> None:
        pass


def test_jobs_never_overlap_and_requests_while_running_rerun_once() -> None:
    host = _Host()
    jobs = Jobs(host)
    runs: Counter[str] = Counter()
    concurrent = 0
    max_concurrent = 0
    inside = threading.Event()
    release = threading.Event()
    lock = threading.Lock()

    def export_once(account_id: str, reason: str) -> None:
        nonlocal concurrent, max_concurrent
        with lock:
            concurrent += 1
            max_concurrent = max(max_concurrent, concurrent)
        runs[reason] += 1
        if reason == "schedule":
            inside.set()
            assert release.wait(5)
        with lock:
            concurrent -= 1

    jobs._export_once = export_once  # type: ignore[method-assign]
    first = threading.Thread(target=jobs.export_account, args=("acct", "schedule"))
    first.start()
    assert inside.wait(5)
    assert jobs.in_flight() == ["export:acct"]
    # While it runs: a second scheduled run and two after-import requests
    # neither run alongside nor get lost; they collapse into one rerun.
    jobs.export_account("acct", "schedule")
    jobs.request_export("acct", "after import a")
    jobs.request_export("acct", "after import b")
    assert host.submitted == []
    assert not jobs.wait_idle(0.05)
    release.set()
    first.join(5)
    assert jobs.wait_idle(5)
    assert runs == {"schedule": 1, "after import b": 1}
    assert max_concurrent == 1
    assert jobs.in_flight() == []
    # Idle again: a request is submitted to the pool.
    jobs.request_export("acct", "after import c")
    assert [args for _f, args in host.submitted] == [["acct", "after import c"]]


def test_jobs_do_nothing_once_stopping_and_survive_errors() -> None:
    host = _Host()
    jobs = Jobs(host)
    calls: list[str] = []

    def broken(source_id: str) -> None:
        calls.append(source_id)
        raise RuntimeError("database is locked")

    jobs._import_once = broken  # type: ignore[method-assign]
    jobs.import_source("inbox")  # logged as job.error, not raised
    assert calls == ["inbox"] and jobs.in_flight() == []
    host.stop.set()
    jobs.import_source("inbox")
    assert calls == ["inbox"]


# -- the monitoring doc ------------------------------------------------------------------------

SPEC_EVENTS = {
    "daemon.started",
    "daemon.reloaded",
    "daemon.stopping",
    "config.invalid",
    "import.finished",
    "document.imported",
    "export.finished",
    "document.exported",
    "document.failed",
    "document.rejected",
    "connector.error",
}


def test_monitoring_doc_lists_every_event_the_code_logs() -> None:
    documented = documented_events()
    assert set(documented) >= SPEC_EVENTS
    root = Path(__file__).resolve().parents[2]
    logged: set[str] = set()
    pattern = re.compile(r"\.(?:info|warning|error)\(\s*\"([a-z_]+\.[a-z_]+)\"")
    for folder in ("daemon", "connectors_builtin"):
        for path in (root / folder).rglob("*.py"):
            logged |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert logged, "found no log calls: the pattern is stale"
    assert logged <= set(documented), f"undocumented: {sorted(logged - set(documented))}"
    assert documented["export.finished"][:2] == [["account"], ["run_id"]]
    assert ["source", "account"] in documented["connector.error"]


def _alert_queries() -> dict[str, str]:
    text = MONITORING_DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- alert-query: ([a-z-]+) -->\n```sh\n(.*?)```", text, re.S)
    return dict(found)


def _journal(events: list[dict[str, Any]]) -> str:
    """What ``journalctl -o json`` prints for these log lines (plus one non-JSON line)."""
    entries = [{"MESSAGE": "Started invoicesync.service", "_SYSTEMD_UNIT": "init.scope"}]
    for event in events:
        entries.append(
            {"MESSAGE": json.dumps(event), "_SYSTEMD_UNIT": "invoicesync.service", "PRIORITY": "6"}
        )
    return "\n".join(json.dumps(e) for e in entries) + "\n"


def _run_query(command: str, journal: str) -> list[str]:
    # The documented command with the journal replaced by canned entries.
    pipeline = command.split("|", 1)[1]
    result = subprocess.run(
        ["bash", "-c", "jq_input=$(cat); printf '%s' \"$jq_input\" |" + pipeline],
        input=journal,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_documented_jq_alert_queries_work() -> None:
    if shutil.which("jq") is None:
        skip_or_fail("jq not found (apt-get install jq)")
    queries = _alert_queries()
    assert set(queries) == {"nothing-exported", "rejections", "connector-errors", "daemon-stopped"}
    t = "2026-11-28T10:00:00Z"

    def ev(event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, "level": "info", "timestamp": t, **fields}

    quiet = [ev("daemon.started"), ev("document.exported", account="archive", document="a/1")]
    assert _run_query(queries["nothing-exported"], _journal(quiet)) == ["datev"]
    assert _run_query(queries["rejections"], _journal(quiet)) == []
    rejected = [*quiet, ev("document.rejected", account="datev", document="a/2", reason="quota")]
    assert _run_query(queries["rejections"], _journal(rejected)) == ["datev a/2: quota"]

    errors = [ev("connector.error", source="portal", error="refused")] * 3
    errors += [ev("connector.error", account="archive", error="timeout")] * 2
    assert _run_query(queries["connector-errors"], _journal(errors)) == [
        "portal: 3 connector errors"
    ]

    assert _run_query(queries["daemon-stopped"], _journal(quiet)) == []
    stopped = [*quiet, ev("daemon.stopped", signal="SIGTERM")]
    assert _run_query(queries["daemon-stopped"], _journal(stopped)) == [
        f"invoicesync stopped at {t} (SIGTERM)"
    ]
    restarted = [*stopped, ev("daemon.started")]
    assert _run_query(queries["daemon-stopped"], _journal(restarted)) == []
    assert _run_query(queries["daemon-stopped"], _journal([])) == [
        "invoicesync logged nothing for 2 hours"
    ]


def test_a_signal_delivered_to_another_thread_still_reaches_the_main_loop() -> None:
    """The kernel may hand a process signal to any thread; the loop must not miss it.

    A subprocess (so that pytest's own handlers stay untouched) waits with
    SignalInbox.next() while a worker thread receives SIGHUP itself
    (pthread_kill): with an untimed wait the main thread would sleep forever.
    """
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import signal, threading, time
        from invoicesync.daemon.scheduler.signals import SignalInbox

        inbox = SignalInbox()
        inbox.install()

        def worker():
            # The scenario, not a synchronisation: let the main thread be
            # asleep in its wait when the signal lands on this thread.
            # (With an untimed wait it then never wakes: checked by hand.)
            time.sleep(0.5)
            signal.pthread_kill(threading.get_ident(), signal.SIGHUP)

        threading.Thread(target=worker, daemon=True).start()
        print(inbox.next(poll=0.2).name, flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "SIGHUP"
