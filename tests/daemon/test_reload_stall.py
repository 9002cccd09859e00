"""A reload never stalls the daemon (issue 10 item 12).

A SIGHUP with a broken file is refused (the running configuration stays),
then the file is fixed and a second SIGHUP applies it. Between and after,
files dropped into a watched folder keep flowing to the target, the systemd
watchdog keeps pinging, and no job is reported ``job.skipped_busy``.

The stall came from sd_notify: every job (its STATUS line), the watchdog
ping and the reload (RELOADING=1, READY=1) sent on one blocking socket under
one lock. When systemd does not read its notify socket for a while (PID 1
busy, e.g. in a ``daemon-reload``; the kernel queues only
``net.unix.max_dgram_qlen`` datagrams, 10 by default), one send blocked and
everything else queued behind it. The test fills the socket's queue itself,
which is exactly what a busy PID 1 looks like from the daemon's side.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.daemon_proc import (
    DaemonProcess,
    daemon_env_fixture,  # noqa: F401
    start_daemon_fixture,  # noqa: F401
    write_config,
)

Start = Callable[..., DaemonProcess]
DEADLINE = 20.0


def watched(tmp: Path, every: str = "1s", target: str = "out") -> Path:
    (tmp / "inbox").mkdir(exist_ok=True)
    data = {
        "version": 1,
        "timezone": "UTC",
        "state": "./state",
        "log": {"format": "json", "level": "info"},
        "daemon": {"grace_period": "10s", "workers": 2, "jitter": "0s"},
        "sources": [
            {
                "id": "inbox",
                "type": "folder",
                "schedule": {"every": every},
                "options": {"path": "./inbox", "watch": True},
            }
        ],
        "exports": [
            {
                "id": "out",
                "type": "folder",
                "schedule": {"after_import": True},
                "filename": "{filename}.{ext}",
                "options": {"path": f"./{target}"},
            }
        ],
    }
    return write_config(tmp / "invoicesync.yaml", data)


class NotifySocket:
    """A stand-in for systemd's notify socket: collects every datagram."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue

    def pause(self) -> None:
        """Stop reading and fill the queue: the daemon's next send would block."""
        self._done.set()
        self._thread.join(2)
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        filler.setblocking(False)
        try:
            while True:
                filler.sendto(b"STATUS=filler", str(self.path))
        except BlockingIOError:
            pass
        finally:
            filler.close()

    def resume(self) -> None:
        """Read again (what systemd does once PID 1 is free)."""
        self._done.clear()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def pings(self) -> int:
        return sum("WATCHDOG=1" in m for m in list(self.messages))

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture(name="notify")
def notify_fixture(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def wait_file(d: DaemonProcess, path: Path, data: bytes) -> None:
    def there(_events: Any) -> bool:
        try:
            return path.read_bytes() == data
        except FileNotFoundError:
            return False

    d.wait_for(there, DEADLINE, what=f"{path} exported")


def test_a_good_reload_after_a_broken_one_applies_at_once_and_never_stalls(
    tmp_path: Path, start_daemon: Start, notify: NotifySocket
) -> None:
    cfg = watched(tmp_path)
    good = cfg.read_text()
    (tmp_path / "inbox" / "before.pdf").write_bytes(b"%PDF-1.4 before")
    d = start_daemon(cfg, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
    d.wait_event("watch.started", DEADLINE, source="inbox")
    wait_file(d, tmp_path / "out" / "before.pdf", b"%PDF-1.4 before")

    # systemd stops reading its notify socket for a while.
    pings = notify.pings()
    d.wait_for(lambda _e: notify.pings() > pings, DEADLINE, what="a watchdog ping")
    notify.pause()

    # 1. A broken file: refused, the running configuration stays.
    mark = d.mark()
    cfg.write_text(good.replace('"every": "1s"', '"every": "soon"'))
    d.signal(signal.SIGHUP)
    d.wait_event("config.invalid", DEADLINE, after=mark)
    (tmp_path / "inbox" / "between.pdf").write_bytes(b"%PDF-1.4 between")
    wait_file(d, tmp_path / "out" / "between.pdf", b"%PDF-1.4 between")

    # 2. The file fixed (and changed: another target folder), a second SIGHUP.
    mark = d.mark()
    watched(tmp_path, target="out2")
    d.signal(signal.SIGHUP)
    reloaded = d.wait_event("daemon.reloaded", DEADLINE, after=mark)
    assert reloaded["sources"] == 1
    (tmp_path / "inbox" / "after.pdf").write_bytes(b"%PDF-1.4 after")
    wait_file(d, tmp_path / "out2" / "after.pdf", b"%PDF-1.4 after")

    # systemd reads again: the watchdog pings arrive as before.
    seen = len(notify.messages)
    notify.resume()
    pings = notify.pings()
    d.wait_for(lambda _e: notify.pings() >= pings + 2, DEADLINE, what="watchdog pings")
    # The state changes that found the queue full were kept and sent first, in order.
    later = [m.split("\n")[0] for m in notify.messages[seen:] if "filler" not in m]
    states = [m for m in later if m in ("RELOADING=1", "READY=1")]
    assert states[:4] == ["RELOADING=1", "READY=1", "RELOADING=1", "READY=1"], later[:12]
    busy = d.named("job.skipped_busy")
    assert not [e for e in busy if e["job"] == "systemd-watchdog"], busy
    code, _ = d.stop()
    assert code == 0
    d.check_logs()
