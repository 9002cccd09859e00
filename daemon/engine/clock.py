"""The evaluation clock: the real time, or ``--now`` moving forward from there."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""``--now`` lies in [EARLIEST, LATEST): far from datetime's limits (years 1
and 9999), so that periods, retry back-off and schedules computed from it
(at most 100 years each, see config.durations.MAX_DAYS) stay in range."""


def check_range(start: datetime) -> None:
    """Raise ValueError when ``start`` is outside the range ``--now`` accepts."""
    if start.tzinfo is None:
        raise ValueError("--now needs a time zone offset, e.g. 2026-12-01T08:00:00+01:00")
    try:
        inside = EARLIEST <= start.astimezone(UTC) < LATEST
    except OverflowError:  # 0001-01-01T00:00-05:00 is before year 1 in UTC
        inside = False
    if not inside:
        raise ValueError(
            f"--now must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}, "
            f"not {start.isoformat()}"
        )


class Clock:
    """``now()`` in UTC. With a start time, behaves as if the wall clock had
    shown that time when the process started (it still advances, so back-off
    and durations stay meaningful)."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None:
            check_range(start)
        self._start = start.astimezone(UTC) if start else None
        self._mono = time.monotonic()

    def now(self) -> datetime:
        if self._start is None:
            return datetime.now(UTC)
        return self._start + timedelta(seconds=time.monotonic() - self._mono)
