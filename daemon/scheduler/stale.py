"""Stale sources and accounts: no successful run for longer than ``stale_after``.

A mailbox or portal that silently stops delivering produces no error at
all: its runs simply stop succeeding (or stop happening). This module says,
for a source or an export account, when its last successful run was and
whether that is too long ago. ``status``, the status page and ``/metrics``
ask :func:`staleness`; the daemon's :class:`StaleMonitor` turns changes into
``source.stale`` / ``account.stale`` (once per episode) and
``source.recovered`` / ``account.recovered``.

``stale_after`` defaults to the schedule's longest gap between two runs plus
twice its usual (median) gap: three intervals for ``every: 15m``, the
weekend plus two runs for a weekday ``cron`` or ``window``. Entries without
a schedule of their own (``after_import`` accounts, unscheduled sources) are
never stale unless ``stale_after`` is given.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from invoicesync.daemon.config.models import ExportConfig, ScheduleConfig, SourceConfig
from invoicesync.daemon.storage.runs import RunLog

from .triggers import build_trigger

__all__ = [
    "StaleLimits",
    "StaleMonitor",
    "Staleness",
    "default_stale_after",
    "effective_stale_after",
    "staleness",
]

#: How far ahead the schedule is sampled for its gaps, and at most how many runs.
_HORIZON = timedelta(days=15)
_MAX_FIRES = 5000


def default_stale_after(
    schedule: ScheduleConfig | None, tz: ZoneInfo, now: datetime
) -> timedelta | None:
    """The longest gap between runs plus twice the median gap; None without a schedule."""
    if schedule is None or schedule.after_import:
        return None
    if schedule.every is not None and schedule.window is None:
        return 3 * schedule.every
    trigger = build_trigger(schedule, tz, timedelta(0), start=now)
    gaps: list[timedelta] = []
    previous: datetime | None = None
    moment = now
    for _ in range(_MAX_FIRES):
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None or fire - now > _HORIZON:
            break
        if previous is not None:
            gaps.append(fire - previous)
        previous, moment = fire, fire
    if not gaps:
        return None  # a schedule that (almost) never fires cannot be late
    return max(gaps) + 2 * statistics.median_low(gaps)


def effective_stale_after(
    entry: SourceConfig | ExportConfig, tz: ZoneInfo, now: datetime
) -> timedelta | None:
    """``stale_after`` as configured, else the schedule's default."""
    if entry.stale_after is not None:
        return entry.stale_after
    return default_stale_after(entry.schedule, tz, now)


@dataclass(frozen=True)
class Staleness:
    """Whether a source or account went too long without a successful run."""

    kind: str  # "source" or "account"
    subject: str
    stale_after: timedelta | None
    last_success: datetime | None
    #: The moment the silence is counted from: the last success, else the
    #: first run, else when the daemon started (None: nothing to count from).
    since: datetime | None
    stale: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "stale": self.stale,
            "stale_after_s": None if self.stale_after is None else self.stale_after.total_seconds(),
            "last_success": self.last_success,
        }


def staleness(
    runs: RunLog,
    kind: str,
    subject: str,
    stale_after: timedelta | None,
    now: datetime,
    started_at: datetime | None = None,
) -> Staleness:
    """Staleness of source or account ``subject`` (``kind``) at ``now``.

    ``stale_after`` comes from :func:`effective_stale_after` (None: never
    stale). ``started_at`` is the daemon's start: an entry that never ran is
    counted from then.
    """
    run_kind = "import" if kind == "source" else "export"
    last = runs.last_success(run_kind, subject)
    last_at = (last.finished_at or last.started_at) if last else None
    since = last_at
    if since is None:
        first = runs.first(run_kind, subject)
        since = first.started_at if first else started_at
    stale = stale_after is not None and since is not None and now - since > stale_after
    return Staleness(kind, subject, stale_after, last_at, since, stale)


class StaleLimits:
    """``stale_after`` per source and account, computed once per configuration."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], timedelta | None] = {}
        self._config: object | None = None

    def get(
        self, config: Any, kind: str, entry: SourceConfig | ExportConfig, now: datetime
    ) -> timedelta | None:
        key = (kind, entry.id)
        with self._lock:
            if config is not self._config:  # a reload: start afresh
                self._cache.clear()
                self._config = config
            if key not in self._cache:
                self._cache[key] = effective_stale_after(entry, config.tz, now)
            return self._cache[key]

    def staleness(
        self,
        runtime: Any,
        kind: str,
        entry: SourceConfig | ExportConfig,
        started_at: datetime | None = None,
    ) -> Staleness:
        """:func:`staleness` of ``entry`` at the runtime's clock."""
        now = runtime.clock.now()
        limit = self.get(runtime.config, kind, entry, now)
        return staleness(runtime.runs, kind, entry.id, limit, now, started_at)


class StaleMonitor:
    """Logs each stale episode once: ``*.stale`` when it starts, ``*.recovered`` when it ends.

    :meth:`check` is called by the daemon at start, after every run and
    periodically; it is pure bookkeeping around :func:`staleness`, so a test
    drives it with any ``now`` it likes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stale: dict[tuple[str, str], datetime] = {}  # (kind, id) -> since
        self.current: dict[tuple[str, str], Staleness] = {}

    def check(self, state: Staleness, now: datetime, logger: Any) -> None:
        key = (state.kind, state.subject)
        with self._lock:
            self.current[key] = state
            was = key in self._stale
            if state.stale and not was:
                self._stale[key] = now
            elif not state.stale and was:
                began = self._stale.pop(key)
            else:
                return
        log = logger.bind(**{state.kind: state.subject})
        if state.stale:
            log.warning(
                f"{state.kind}.stale",
                last_success=_iso(state.last_success),
                silent_since=_iso(state.since),
                stale_after_s=state.stale_after.total_seconds() if state.stale_after else None,
            )
        else:
            log.info(
                f"{state.kind}.recovered",
                last_success=_iso(state.last_success),
                stale_for_s=round((now - began).total_seconds(), 1),
            )

    def forget(self, keep: set[tuple[str, str]]) -> None:
        """Drop entries no longer configured (after a reload)."""
        with self._lock:
            for key in [k for k in self._stale if k not in keep]:
                del self._stale[key]
            for key in [k for k in self.current if k not in keep]:
                del self.current[key]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
