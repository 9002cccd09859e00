"""Calendar arithmetic for the ``period`` restriction (SPEC section 2).

Everything here works on *local calendar days* in the configured time zone:
durations (``last: 3m``), presets (``previous_quarter``), inclusive day
windows, and the conversion of a window's bounds into UTC instants so that the
import-date check can be pushed into SQL exactly, DST changes included.

Pure functions only; no clock is read here (callers pass ``now``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "DayWindow",
    "Preset",
    "Span",
    "add_months",
    "day_start_utc",
    "local_day",
    "local_today",
    "parse_span",
    "preset_window",
    "span_start",
]

_SPAN = re.compile(r"^\s*(\d{1,6})\s*([dwmy])\s*$")
SPAN_HELP = "expected N followed by d, w, m or y (days, weeks, months, years), e.g. 3m"


@dataclass(frozen=True)
class Span:
    """A duration counted in calendar units: ``3m`` is three months."""

    count: int
    unit: str  # one of d, w, m, y

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def parse_span(text: object) -> Span:
    """Parse ``N<unit>``; raise ValueError with :data:`SPAN_HELP` otherwise."""
    match = _SPAN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{SPAN_HELP}; got {text!r}")
    return Span(int(match.group(1)), match.group(2))


def add_months(day: date, months: int) -> date:
    """``day`` moved by ``months`` calendar months, clamped to the month's last day.

    31 March - 1 month is 28 (or 29) February, not 3 March. Raises
    OverflowError outside the years 1..9999.
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError(f"date out of range: {day} {months:+d} months")
    month = month0 + 1
    return date(year, month, min(day.day, _days_in_month(year, month)))


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (date(year, month + 1, 1) - timedelta(days=1)).day


def span_start(today: date, span: Span) -> date:
    """The first day of ``last: span`` counted back from ``today``.

    A span reaching before year 1 clamps to ``date.min`` (every date passes),
    which is what a user writing ``last: 99999y`` means.
    """
    try:
        if span.unit == "d":
            return today - timedelta(days=span.count)
        if span.unit == "w":
            return today - timedelta(weeks=span.count)
        months = span.count * (12 if span.unit == "y" else 1)
        return add_months(today, -months)
    except OverflowError:
        return date.min


class Preset(StrEnum):
    """Whole calendar periods relative to today."""

    CURRENT_MONTH = "current_month"
    PREVIOUS_MONTH = "previous_month"
    CURRENT_QUARTER = "current_quarter"
    PREVIOUS_QUARTER = "previous_quarter"
    CURRENT_YEAR = "current_year"
    PREVIOUS_YEAR = "previous_year"


def preset_window(preset: Preset, today: date) -> tuple[date, date]:
    """First and last day (inclusive) of the calendar period ``preset`` names."""
    if preset in (Preset.CURRENT_YEAR, Preset.PREVIOUS_YEAR):
        year = today.year - (preset is Preset.PREVIOUS_YEAR)
        return date(year, 1, 1), date(year, 12, 31)
    if preset in (Preset.CURRENT_MONTH, Preset.PREVIOUS_MONTH):
        length = 1
        first = date(today.year, today.month, 1)
    else:
        length = 3
        first = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    if preset in (Preset.PREVIOUS_MONTH, Preset.PREVIOUS_QUARTER):
        first = add_months(first, -length)
    last = add_months(first, length) - timedelta(days=1)
    return first, last


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    """The calendar day in ``tz`` at ``instant`` (naive instants are UTC)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(tz).date()


def local_today(now: datetime, tz: ZoneInfo) -> date:
    """ "Today" in the configured zone at the evaluation time ``now``."""
    return local_day(now, tz)


def day_start_utc(day: date, tz: ZoneInfo) -> datetime | None:
    """The first UTC instant whose local day in ``tz`` is ``day`` or later.

    For an ordinary day that is local midnight. When midnight falls in a DST
    gap (clocks jump 00:00 -> 01:00) it is the gap's end; for a day a zone
    skipped entirely (Pacific/Apia, 2011-12-30) it is the start of the next
    day. ``fold=0`` gives exactly this, because a non-existent local time is
    then read with the offset in force *before* the transition, which lands
    on the transition instant. None when the instant is outside datetime's
    range (then every representable instant is on one side of it).

    Invariant (tested for many zones): for every instant ``t`` and day ``d``,
    ``t >= day_start_utc(d)`` iff ``local_day(t) >= d``.
    """
    try:
        return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    except OverflowError:
        return None


@dataclass(frozen=True)
class DayWindow:
    """An inclusive range of local calendar days; None means unbounded."""

    first: date | None
    last: date | None

    def contains(self, day: date) -> bool:
        return (self.first is None or day >= self.first) and (self.last is None or day <= self.last)

    def utc_bounds(self, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """``(lo, hi)`` with ``lo <= t < hi`` iff ``local_day(t, tz)`` is in the window.

        A None bound means "no limit on that side" and is exact: either the
        window is open there or the bound lies outside datetime's range.
        """
        lo = None if self.first is None else day_start_utc(self.first, tz)
        hi = None
        if self.last is not None and self.last < date.max:
            hi = day_start_utc(self.last + timedelta(days=1), tz)
        # Overflow only happens below year 1 (local midnight is at most 14 h
        # from UTC, so the top end always fits): an open bound is then exact.
        return lo, hi

    def describe(self) -> str:
        if self.first is not None and self.last is not None:
            return f"{self.first} to {self.last}"
        if self.first is not None:
            return f"on or after {self.first}"
        if self.last is not None:
            return f"on or before {self.last}"
        return "any day"
