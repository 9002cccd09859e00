"""Watch mode: a thread per watched source that starts its import on changes.

A source opts in by returning a :class:`~invoicesync.plugins.WatchSpec` from
``watch_spec()`` (the ``folder`` source does with ``watch: true``). The thread
runs :func:`watchfiles.watch` (inotify on Linux) on the spec's paths and,
whenever a relevant change arrives, asks the daemon to import the source now.

- Bursts coalesce twice: watchfiles groups changes until they pause (50 ms,
  at most 1.6 s), and the import job never runs twice at once -- changes
  that arrive during a run cause exactly one more run.
- The first import is started once the watch is in place, so nothing that
  arrived while the daemon was down, or while it was starting, is missed.
- A folder that is missing (an unmounted share) is retried with back-off;
  the import that follows its return picks up whatever is there.
- :meth:`SourceWatcher.stop` sets watchfiles' ``stop_event``: the watch
  returns within one step (50 ms) and the thread ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoicesync.daemon.logging import get_logger
from invoicesync.plugins import WatchSpec

__all__ = ["SourceWatcher"]

# How long one wait inside watchfiles may block before it yields an empty
# set; the first such yield tells us the watch is registered.
_RUST_TIMEOUT_MS = 1000
_RETRY_INITIAL_S = 2.0
_RETRY_MAX_S = 60.0
_MAX_LOGGED_PATHS = 5


class SourceWatcher:
    """One thread watching one source's paths; ``trigger(source_id, reason)`` on changes."""

    def __init__(
        self,
        source_id: str,
        spec: WatchSpec,
        trigger: Callable[[str, str], None],
        key: Any = None,
    ) -> None:
        self.source_id = source_id
        self.spec = spec
        self.key = key
        """What the watcher was built from; a reload restarts it when this changes."""
        self._trigger = trigger
        self.failures = 0
        """How many times watching failed (and was retried) so far."""
        self._stop = threading.Event()
        self._stop_reason = "shutdown"
        self._thread = threading.Thread(target=self._run, name=f"watch:{source_id}", daemon=True)
        self._log = get_logger(source=source_id)

    def start(self) -> None:
        self._thread.start()

    def stop(self, reason: str, timeout: float = 5.0) -> bool:
        """Stop watching; True when the thread ended within ``timeout``."""
        self._stop_reason = reason
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------

    def _accept(self, _change: Any, path: str) -> bool:
        relevant = self.spec.relevant
        return relevant is None or relevant(Path(path))

    def _run(self) -> None:
        import watchfiles  # imported here: only daemons with watched sources need it

        paths = [str(p) for p in self.spec.paths]
        delay = _RETRY_INITIAL_S
        started = False
        try:
            while not self._stop.is_set():
                try:
                    first = True
                    for changes in watchfiles.watch(
                        *paths,
                        watch_filter=self._accept,
                        stop_event=self._stop,
                        rust_timeout=_RUST_TIMEOUT_MS,
                        yield_on_timeout=True,
                        raise_interrupt=False,
                        recursive=self.spec.recursive,
                    ):
                        if first:
                            # The watch is in place now: import what is there.
                            first = False
                            delay = _RETRY_INITIAL_S
                            if not started:
                                started = True
                                self._log.info(
                                    "watch.started",
                                    paths=paths,
                                    recursive=self.spec.recursive,
                                )
                            self._fire("start", changes)
                        elif changes:
                            self._fire("change", changes)
                except Exception as exc:  # a missing folder, inotify limits, ...
                    if self._stop.is_set():
                        break
                    self.failures += 1
                    self._log.warning(
                        "watch.error",
                        paths=paths,
                        error=_describe(exc),
                        retry_in_s=delay,
                    )
                    self._stop.wait(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
        finally:
            self._log.info("watch.stopped", reason=self._stop_reason)

    def _fire(self, reason: str, changes: set[tuple[Any, str]]) -> None:
        if self._stop.is_set():
            return
        shown = sorted(path for _change, path in changes)[:_MAX_LOGGED_PATHS]
        self._log.info("watch.triggered", reason=reason, changes=len(changes), paths=shown)
        self._trigger(self.source_id, f"watch: {reason}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        # watchfiles says "No path was found." without naming it.
        return "the folder does not exist (not mounted?)"
    if isinstance(exc, OSError) and exc.strerror:
        name = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{name}"
    return f"{type(exc).__name__}: {exc}"
