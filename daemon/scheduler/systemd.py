"""The systemd notification protocol (``sd_notify``), without a dependency.

systemd passes a unix datagram socket in ``$NOTIFY_SOCKET`` (a path, or an
abstract name starting with ``@``); each datagram is newline-separated
``KEY=VALUE`` pairs. ``Type=notify`` units wait for ``READY=1``; with
``WatchdogSec=`` set, ``$WATCHDOG_USEC`` says how often ``WATCHDOG=1`` must
arrive before systemd considers the service hung and restarts it. Outside
systemd (no ``$NOTIFY_SOCKET``) every call is a cheap no-op.

Sending never blocks the daemon. The kernel queues only a few datagrams
(``net.unix.max_dgram_qlen``, 10 by default) for a reader that is busy --
PID 1 during a ``daemon-reload``, say. A blocking send under a shared lock
then held up every job (each reports its STATUS), the watchdog ping and the
reload (RELOADING=1, READY=1) alike: the scheduler saw every job still
running and skipped them all. So the socket is non-blocking: a WATCHDOG or
STATUS message that finds the queue full is dropped (the next one follows
soon), and a state change (READY, RELOADING, STOPPING) waits at most
:data:`STATE_WAIT_S`, then stays pending and goes out first with the next
message that gets through.

See sd_notify(3) and systemd.service(5).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

from invoicesync.daemon.logging import get_logger

__all__ = ["STATE_WAIT_S", "Notifier", "watchdog_interval"]

STATE_WAIT_S = 1.0
"""How long a state change waits for room in a full notify socket queue."""

_STATE_KEYS = ("READY", "RELOADING", "STOPPING")


def _address(raw: str) -> str | bytes | None:
    if raw.startswith("@"):
        # Abstract namespace: a leading NUL byte instead of "@".
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # vsock: and other exotic addresses are not supported; systemd only
    # uses those for VMs, never for a service on the host.
    return None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or None when the watchdog is off.

    systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, which must be us).
    We ping at half the timeout, as sd_watchdog_enabled(3) recommends.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2


class Notifier:
    """Sends state changes to systemd; silent when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = _address(raw) if raw else None
        self._sock: socket.socket | None = None
        # Guards the socket and the pending list; never held while waiting.
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._warned = False
        self._busy = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram, e.g. ``notify(READY=1, STATUS="idle")``; True if sent.

        Never blocks for long (see the module docstring): False means not
        sent now -- dropped (WATCHDOG, STATUS) or pending (a state change).
        """
        if self.address is None:
            return False
        # STATUS is one line: a newline would start a new (bogus) assignment.
        payload = "\n".join(
            f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items()
        ).encode()
        state_change = any(key in fields for key in _STATE_KEYS)
        deadline = time.monotonic() + (STATE_WAIT_S if state_change else 0.0)
        while True:
            sent = self._send(payload)
            if sent is not None:
                return sent
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)  # the reader is busy: try again shortly, lock released
        with self._lock:
            if state_change:
                self._pending.append(payload)
            if not self._busy:
                self._busy = True
                get_logger().warning(
                    "systemd.notify_failed",
                    error="the notify socket is full (systemd is not reading it); "
                    "WATCHDOG and STATUS messages are dropped until it reads again",
                )
        return False

    def _send(self, payload: bytes) -> bool | None:
        """True sent, False the socket is unusable, None its queue is full."""
        assert self.address is not None
        with self._lock:
            try:
                if self._sock is None:
                    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                    self._sock = socket.socket(socket.AF_UNIX, kind)
                # State changes that could not go out earlier go first, in order.
                while self._pending:
                    self._sock.sendto(self._pending[0], self.address)
                    self._pending.pop(0)
                self._sock.sendto(payload, self.address)
                self._busy = False
                return True
            except BlockingIOError:
                return None
            except OSError as exc:
                # systemd went away or the socket is wrong: log once, never
                # let notification trouble stop the daemon's real work.
                if not self._warned:
                    self._warned = True
                    get_logger().warning("systemd.notify_failed", error=str(exc))
                return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload units match the reload to
        # this message; plain Type=notify ignores it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec, STATUS="reloading configuration")

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
