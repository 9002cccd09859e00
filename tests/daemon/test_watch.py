"""Watch mode: ``invoicesync run`` imports a watched folder's files as they arrive.

The daemon runs as a subprocess (fixtures/daemon_proc.py); every wait polls
its log or the target folder with a bounded deadline. The only sleeps are the
slow writer's pauses between chunks -- that writer is the scenario.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fixtures.daemon_proc import DaemonProcess, write_config
from invoicesync.daemon.scheduler.jobs import Jobs
from invoicesync.daemon.scheduler.watch import SourceWatcher
from invoicesync.plugins import WatchSpec

Start = Callable[..., DaemonProcess]
DEADLINE = 20.0


def watch_config(
    tmp: Path,
    schedule: dict[str, Any] | None = None,
    level: str = "info",
    inbox: str = "inbox",
    **options: Any,
) -> Path:
    """A watched folder source (no schedule unless given) feeding an after_import folder."""
    (tmp / inbox).mkdir(exist_ok=True)
    source: dict[str, Any] = {
        "id": "inbox",
        "type": "folder",
        "options": {"path": f"./{inbox}", "watch": True, **options},
    }
    if schedule is not None:
        source["schedule"] = schedule
    data = {
        "version": 1,
        "timezone": "UTC",
        "state": "./state",
        "log": {"format": "json", "level": level},
        "daemon": {"grace_period": "10s", "workers": 2, "jitter": "0s"},
        "sources": [source],
        "exports": [
            {
                "id": "out",
                "type": "folder",
                "schedule": {"after_import": True},
                "filename": "{filename}.{ext}",
                "options": {"path": "./out"},
            }
        ],
    }
    return write_config(tmp / "invoicesync.yaml", data)


def wait_exported(d: DaemonProcess, path: Path, data: bytes | None = None) -> None:
    """Wait until ``path`` exists (with ``data``, if given)."""

    def there(_events: Any) -> bool:
        try:
            return data is None or path.read_bytes() == data
        except FileNotFoundError:
            return False

    d.wait_for(there, DEADLINE, what=f"{path.name} exported")


def imported(d: DaemonProcess, document: str) -> list[dict[str, Any]]:
    return [e for e in d.named("document.imported") if e["document"] == document]


def stop_cleanly(d: DaemonProcess) -> None:
    """SIGTERM: exit 0, the watcher reported stopped before the daemon's last line."""
    code, took = d.stop()
    assert code == 0, d.lines[-10:]
    assert took < 10, f"took {took:.1f} s to stop"
    names = [e["event"] for e in d.events]
    assert "watch.stopped" in names
    assert names[-1] == "daemon.stopped"
    assert [e["reason"] for e in d.named("watch.stopped")][-1] == "shutdown"
    d.check_logs()


def test_a_dropped_file_is_imported_at_once_without_a_schedule(
    tmp_path: Path, start_daemon: Start
) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "before.pdf").write_bytes(b"%PDF-1.4 waiting since yesterday")
    d = start_daemon(watch_config(tmp_path))
    d.wait_event("watch.started", DEADLINE, source="inbox")
    # The watch starts with an import of what is already there.
    wait_exported(d, tmp_path / "out" / "before.pdf")
    assert d.named("daemon.started")[0]["jobs"] == 0  # no schedule: only the watch imports

    mark = d.mark()
    (tmp_path / "inbox" / ".hidden.pdf").write_bytes(b"never a document")
    (tmp_path / "inbox" / "sub").mkdir()
    (tmp_path / "inbox" / "sub" / "new.pdf").write_bytes(b"%PDF-1.4 dropped")
    d.wait_event("watch.triggered", DEADLINE, after=mark, source="inbox", reason="change")
    wait_exported(d, tmp_path / "out" / "new.pdf", b"%PDF-1.4 dropped")
    d.wait_for(lambda _e: imported(d, "inbox/sub/new.pdf"), DEADLINE, what="import logged")
    triggered = [p for e in d.named("watch.triggered") for p in e["paths"]]
    assert not [p for p in triggered if ".hidden" in p], triggered
    assert not (tmp_path / "out" / ".hidden.pdf").exists()

    # A sidecar written later changes the document's metadata: that is a change too.
    mark = d.mark()
    (tmp_path / "inbox" / "sub" / "new.pdf.json").write_text('{"number": "RE-7"}')
    d.wait_event(
        "document.imported", DEADLINE, after=mark, document="inbox/sub/new.pdf", change="metadata"
    )
    stop_cleanly(d)


def test_a_file_still_being_written_is_imported_whole(tmp_path: Path, start_daemon: Start) -> None:
    d = start_daemon(watch_config(tmp_path, schedule={"every": "1h"}, level="debug", stable_for=2))
    d.wait_event("watch.started", DEADLINE, source="inbox")
    target = tmp_path / "inbox" / "scan.pdf"
    chunks = [b"%PDF-1.4\n"] + [f"page {i}\n".encode() * 500 for i in range(8)] + [b"%%EOF\n"]
    with target.open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(0.2)  # a scanner writing page by page: the scenario, not a sync
    final = b"".join(chunks)

    wait_exported(d, tmp_path / "out" / "scan.pdf", final)
    assert (tmp_path / "out" / "scan.pdf").read_bytes() == final
    # Imported once, complete: never a half-written revision in the catalog.
    events = imported(d, "inbox/scan.pdf")
    assert [(e["change"], e["revision"]) for e in events] == [("new", 1)]
    # ... because the imports during the writing saw it growing and left it.
    deferred = [e for e in d.named("document.deferred") if e["document"] == "inbox/scan.pdf"]
    assert deferred, "no import ran while the file was being written"
    # The last change was followed by a re-fetch once stable_for had passed.
    assert [e for e in d.named("watch.triggered") if e["reason"] == "stable_for"]
    stop_cleanly(d)


def test_reload_moves_the_watch_and_sigterm_stops_it(tmp_path: Path, start_daemon: Start) -> None:
    cfg = watch_config(tmp_path)
    d = start_daemon(cfg)
    d.wait_event("watch.started", DEADLINE, source="inbox")
    d.wait_event("watch.triggered", DEADLINE, source="inbox", reason="start")

    # A reload that leaves the source alone keeps its watcher: the watchers
    # are settled before daemon.reloaded is logged, so this needs no waiting.
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_event("daemon.reloaded", DEADLINE, after=mark)
    assert not [e for e in d.events[mark:] if e["event"].startswith("watch.")]

    mark = d.mark()
    watch_config(tmp_path, inbox="inbox2")  # same source, another folder
    d.signal(signal.SIGHUP)
    d.wait_event("daemon.reloaded", DEADLINE, after=mark)
    d.wait_event("watch.stopped", DEADLINE, after=mark, source="inbox", reason="reload")
    started = d.wait_event("watch.started", DEADLINE, after=mark, source="inbox")
    assert [Path(p).resolve() for p in started["paths"]] == [(tmp_path / "inbox2").resolve()]

    (tmp_path / "inbox2" / "moved.pdf").write_bytes(b"%PDF-1.4 in the new folder")
    wait_exported(d, tmp_path / "out" / "moved.pdf", b"%PDF-1.4 in the new folder")
    stop_cleanly(d)


def test_source_watcher_triggers_and_stops_promptly(tmp_path: Path) -> None:
    """In process: the first trigger follows the watch's start; stop() ends the thread."""
    calls: list[tuple[str, str]] = []
    arrived = threading.Condition()

    def trigger(source_id: str, reason: str) -> None:
        with arrived:
            calls.append((source_id, reason))
            arrived.notify_all()

    def wait_calls(n: int) -> None:
        with arrived:
            assert arrived.wait_for(lambda: len(calls) >= n, DEADLINE), calls

    spec = WatchSpec(paths=(tmp_path,), relevant=lambda p: not p.name.startswith("."))
    watcher = SourceWatcher("inbox", spec, trigger)
    watcher.start()
    wait_calls(1)
    assert calls[0] == ("inbox", "watch: start")
    (tmp_path / "a.pdf").write_bytes(b"a")
    wait_calls(2)
    assert calls[1] == ("inbox", "watch: change")
    started = time.monotonic()
    assert watcher.stop("shutdown", timeout=5)
    assert time.monotonic() - started < 2


def test_source_watcher_waits_for_a_missing_folder(tmp_path: Path, monkeypatch: Any) -> None:
    """An unmounted share: retried with back-off; importing starts once it is there."""
    monkeypatch.setattr("invoicesync.daemon.scheduler.watch._RETRY_INITIAL_S", 0.05)
    calls: list[str] = []
    folder = tmp_path / "share"
    watcher = SourceWatcher("inbox", WatchSpec(paths=(folder,)), lambda _s, r: calls.append(r))
    watcher.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while watcher.failures < 2:  # failed, retried, failed again
            assert time.monotonic() < deadline, "the watcher never reported the missing folder"
            time.sleep(0.01)  # polling a counter another thread bumps
        assert calls == []
        folder.mkdir()
        while not calls:
            assert time.monotonic() < deadline, "no import after the folder appeared"
            time.sleep(0.01)
        assert calls == ["watch: start"]
    finally:
        assert watcher.stop("shutdown", timeout=5)


class _Host:
    """A JobHost that records submissions instead of running them."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.submitted: list[tuple[Callable[..., None], list[Any]]] = []

    @property
    def runtime(self) -> Any:
        raise AssertionError("not used")

    def submit(self, func: Callable[..., None], args: list[Any], name: str) -> None:
        self.submitted.append((func, args))

    def run_finished(self, kind: str, subject: str, summary: Any) -> None:
        pass


def test_request_import_coalesces_bursts() -> None:
    """Changes while a request waits for a worker add nothing; during a run, one rerun."""
    host = _Host()
    jobs = Jobs(host)
    runs: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def import_once(source_id: str) -> None:
        runs.append(source_id)
        if len(runs) == 1:
            inside.set()
            assert release.wait(DEADLINE)

    jobs._import_once = import_once  # type: ignore[method-assign]
    for _ in range(3):
        jobs.request_import("inbox", "watch: change")
    assert len(host.submitted) == 1  # one queued request covers the burst
    func, args = host.submitted[0]
    worker = threading.Thread(target=func, args=args)
    worker.start()
    assert inside.wait(DEADLINE)
    jobs.request_import("inbox", "watch: change")
    jobs.request_import("inbox", "watch: change")
    assert len(host.submitted) == 1  # running: asked for a rerun instead
    release.set()
    worker.join(DEADLINE)
    assert jobs.wait_idle(DEADLINE)
    assert runs == ["inbox", "inbox"]  # the run and exactly one rerun
    jobs.request_import("inbox", "watch: change")  # idle again: submitted anew
    assert len(host.submitted) == 2
