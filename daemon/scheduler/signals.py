"""Signals as messages to the daemon's main loop.

A Python signal handler runs in the main thread between two bytecodes, maybe
while that thread holds a lock. So the handlers here only put the signal
number on a :class:`queue.SimpleQueue` (whose ``put`` is reentrant, unlike
``queue.Queue``'s) and the main loop does the real work: reload on SIGHUP,
shut down on SIGTERM or SIGINT.
"""

from __future__ import annotations

import queue
import signal
from collections.abc import Iterable
from types import FrameType
from typing import Any

__all__ = ["SignalInbox"]

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class SignalInbox:
    """Catches signals and hands them out one by one with :meth:`wait`."""

    def __init__(self, signals: Iterable[signal.Signals] = HANDLED) -> None:
        self._queue: queue.SimpleQueue[signal.Signals] = queue.SimpleQueue()
        self._previous: dict[signal.Signals, Any] = {}
        self._signals = tuple(signals)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._queue.put(signal.Signals(signum))

    def install(self) -> None:
        """Install the handlers (must be called from the main thread)."""
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def next(self, poll: float = 0.5) -> signal.Signals:
        """Block until a signal arrives; return it.

        Never blocks without a timeout: the kernel may deliver a signal to any
        thread (watchfiles', a worker's), and then only the C-level handler
        runs; the Python handler waits until the main thread next executes
        bytecode, which an endless wait on the queue's lock would never do.
        SIGHUP, even SIGTERM, would go unanswered.
        """
        while True:
            signum = self.wait(timeout=poll)
            if signum is not None:
                return signum

    def wait(self, timeout: float | None = None) -> signal.Signals | None:
        """The next signal received, or None after ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def post(self, sig: signal.Signals) -> None:
        """Deliver a signal by hand (tests, or an internal request to stop)."""
        self._queue.put(sig)
