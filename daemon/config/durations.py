"""Durations as users write them: ``30s``, ``15m``, ``1h``, ``1d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

MAX_DAYS = 36500
"""The longest duration accepted (100 years): anything longer is a typo, and
date arithmetic with it (next run, retry back-off, a wait) would overflow."""


def parse_duration(value: Any) -> timedelta:
    """``"15m"`` -> 15 minutes. A bare number (no unit) is refused; so is anything else."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 1h or 1d")
    bare = isinstance(value, int | float)
    if bare:
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 30s, 15m, 1h or 1d, got {str(value)!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds != seconds:  # NaN
        raise ValueError("expected a duration such as 30s, 15m, 1h or 1d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DAYS * 86400:
        raise ValueError(f"a duration cannot be longer than {MAX_DAYS}d (100 years)")
    if bare:
        # `every: 15` would silently mean 15 seconds where 15 minutes was
        # likely meant: a duration in the configuration always has a unit.
        raise ValueError(
            f"{value!r} has no unit: write {value:g}s, {value:g}m, {value:g}h or {value:g}d"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*\d+(\.\d+)?\s*[smhd]\s*$",
            "examples": ["30s", "15m", "1h", "1d"],
        }
    ),
]
"""A pydantic field type accepting ``30s``/``15m``/``1h``/``1d`` (a string with a unit)."""
