"""The evaluation clock: the real time, or ``--now`` moving forward from there."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    """``now()`` in UTC. With a start time, behaves as if the wall clock had
    shown that time when the process started (it still advances, so back-off
    and durations stay meaningful)."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("--now needs a time zone offset, e.g. 2026-12-01T08:00:00+01:00")
        self._start = start.astimezone(UTC) if start else None
        self._mono = time.monotonic()

    def now(self) -> datetime:
        if self._start is None:
            return datetime.now(UTC)
        return self._start + timedelta(seconds=time.monotonic() - self._mono)
