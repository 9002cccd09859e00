"""A ``schedule:`` as an APScheduler trigger, windows included.

``every`` becomes an :class:`IntervalTrigger`, ``cron`` a :class:`CronTrigger`
(crontab syntax, in the configured time zone), both with the daemon's jitter
so that jobs sharing a schedule do not all start in the same second. A
``window`` wraps the trigger in :class:`WindowedTrigger`, which moves every
fire time outside the allowed days and hours to the window's next opening.

APScheduler's own ``AndTrigger`` cannot express a window: combined with an
interval trigger it loops forever, because an interval trigger given the
previous fire time ignores ``now``.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from invoicesync.daemon.config.models import ScheduleConfig, WindowConfig

__all__ = ["Window", "WindowedTrigger", "build_trigger", "effective_jitter"]


class Window:
    """Allowed weekdays and hours ``[start, end)`` in a time zone."""

    def __init__(self, config: WindowConfig, tz: ZoneInfo) -> None:
        self.days = config.day_numbers()
        self.start_hour, self.end_hour = config.hour_range()
        self.tz = tz

    def __repr__(self) -> str:
        return f"Window(days={sorted(self.days)}, hours={self.start_hour}-{self.end_hour})"

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz)
        return local.weekday() in self.days and self.start_hour <= local.hour < self.end_hour

    def next_opening(self, moment: datetime) -> datetime | None:
        """``moment`` itself when inside the window, else when the window next opens."""
        if not self.days:
            return None
        if self.contains(moment):
            return moment
        local = moment.astimezone(self.tz)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opening = datetime.combine(day, time(self.start_hour), tzinfo=self.tz)
            if opening > local:
                return opening
        return None  # pragma: no cover - a non-empty day set always opens within 8 days


class WindowedTrigger(BaseTrigger):
    """Fire when ``inner`` fires, but only inside ``window``.

    A fire time outside the window is replaced by the inner trigger's first
    fire time at or after the window's next opening.
    """

    __slots__ = ("inner", "window")

    def __init__(self, inner: BaseTrigger, window: Window) -> None:
        self.inner = inner
        self.window = window

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        candidate: datetime | None = self.inner.get_next_fire_time(previous_fire_time, now)
        for _ in range(1000):  # bounded: a window that never matches gives None
            if candidate is None:
                return None
            opening = self.window.next_opening(candidate)
            if opening is None:
                return None
            if opening == candidate:
                return candidate
            # Ask the inner trigger afresh from the opening (no previous fire
            # time: an interval trigger would otherwise ignore ``now``).
            candidate = self.inner.get_next_fire_time(None, opening)
        return None

    def __str__(self) -> str:
        return f"{self.inner} within {self.window!r}"

    def __repr__(self) -> str:
        return f"<WindowedTrigger ({self})>"


def effective_jitter(schedule: ScheduleConfig, jitter: timedelta) -> int | None:
    """Jitter in whole seconds, at most a quarter of an ``every`` interval.

    APScheduler takes whole seconds. The cap keeps a short interval (a test's
    ``every: 2s``) from being swamped by the default 5 s jitter.
    """
    seconds = jitter.total_seconds()
    if schedule.every is not None:
        seconds = min(seconds, schedule.every.total_seconds() / 4)
    whole = int(seconds)
    return whole if whole > 0 else None


def build_trigger(
    schedule: ScheduleConfig, tz: ZoneInfo, jitter: timedelta, start: datetime | None = None
) -> BaseTrigger:
    """The trigger for an ``every`` or ``cron`` schedule (not ``after_import``)."""
    jit = effective_jitter(schedule, jitter)
    trigger: Any
    if schedule.every is not None:
        trigger = IntervalTrigger(
            seconds=schedule.every.total_seconds(), start_date=start, timezone=tz, jitter=jit
        )
    elif schedule.cron is not None:
        trigger = CronTrigger.from_crontab(schedule.cron, timezone=tz)
        trigger.jitter = jit
    else:
        raise ValueError("after_import schedules have no trigger of their own")
    if schedule.window is not None:
        return WindowedTrigger(trigger, Window(schedule.window, tz))
    result: BaseTrigger = trigger
    return result
