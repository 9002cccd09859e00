"""Calendar arithmetic behind the period restriction: month clamping, presets,
local days and their UTC bounds across DST changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invoicesync.daemon.restrictions.periods import (
    DayWindow,
    Preset,
    Span,
    add_months,
    day_start_utc,
    local_day,
    parse_span,
    preset_window,
    span_start,
)

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2024, 3, 31), -1, date(2024, 2, 29)),  # leap year clamps to the 29th
        (date(2023, 3, 31), -1, date(2023, 2, 28)),
        (date(2024, 2, 29), -12, date(2023, 2, 28)),  # 29 Feb minus a year
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2024, 5, 31), -1, date(2024, 4, 30)),
        (date(2024, 12, 15), 1, date(2025, 1, 15)),
        (date(2024, 1, 15), -1, date(2023, 12, 15)),
        (date(2024, 3, 15), 0, date(2024, 3, 15)),
    ],
)
def test_add_months_clamps_to_the_last_day(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


def test_add_months_out_of_range() -> None:
    with pytest.raises(OverflowError):
        add_months(date(1, 1, 1), -1)


@pytest.mark.parametrize(
    ("today", "span", "expected"),
    [
        (date(2024, 3, 31), "1m", date(2024, 2, 29)),
        (date(2023, 3, 31), "1m", date(2023, 2, 28)),
        (date(2024, 2, 29), "1y", date(2023, 2, 28)),
        (date(2024, 6, 30), "3m", date(2024, 3, 30)),
        (date(2024, 3, 1), "1d", date(2024, 2, 29)),
        (date(2024, 3, 14), "2w", date(2024, 2, 29)),
        (date(2024, 3, 14), "0d", date(2024, 3, 14)),
        (date(2024, 3, 14), "999999y", date.min),  # clamps instead of failing
        (date(2024, 3, 14), "999999d", date.min),
    ],
)
def test_span_start(today: date, span: str, expected: date) -> None:
    assert span_start(today, parse_span(span)) == expected


@pytest.mark.parametrize("text", ["3m", "12 d", " 1y ", "0w", "3650d"])
def test_parse_span_accepts(text: str) -> None:
    assert isinstance(parse_span(text), Span)
    assert str(parse_span(text)) == text.replace(" ", "")


@pytest.mark.parametrize(
    "text", ["3", "m", "3x", "3M", "-1d", "1.5m", "3mo", "", 3, None, "1234567d"]
)
def test_parse_span_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="expected N followed by d, w, m or y"):
        parse_span(text)


@pytest.mark.parametrize(
    ("preset", "today", "first", "last"),
    [
        (Preset.CURRENT_MONTH, date(2024, 2, 10), date(2024, 2, 1), date(2024, 2, 29)),
        (Preset.PREVIOUS_MONTH, date(2024, 3, 31), date(2024, 2, 1), date(2024, 2, 29)),
        (Preset.PREVIOUS_MONTH, date(2024, 1, 1), date(2023, 12, 1), date(2023, 12, 31)),
        (Preset.CURRENT_QUARTER, date(2024, 5, 20), date(2024, 4, 1), date(2024, 6, 30)),
        (Preset.CURRENT_QUARTER, date(2024, 12, 31), date(2024, 10, 1), date(2024, 12, 31)),
        (Preset.PREVIOUS_QUARTER, date(2024, 2, 29), date(2023, 10, 1), date(2023, 12, 31)),
        (Preset.PREVIOUS_QUARTER, date(2024, 9, 30), date(2024, 4, 1), date(2024, 6, 30)),
        (Preset.CURRENT_YEAR, date(2024, 7, 1), date(2024, 1, 1), date(2024, 12, 31)),
        (Preset.PREVIOUS_YEAR, date(2024, 1, 1), date(2023, 1, 1), date(2023, 12, 31)),
    ],
)
def test_presets(preset: Preset, today: date, first: date, last: date) -> None:
    assert preset_window(preset, today) == (first, last)


@given(st.dates(min_value=date(2, 1, 1), max_value=date(9998, 12, 31)), st.sampled_from(Preset))
@settings(max_examples=200)
def test_presets_are_whole_adjacent_periods(today: date, preset: Preset) -> None:
    first, last = preset_window(preset, today)
    assert first.day == 1 and (last + timedelta(days=1)).day == 1
    if preset.value.startswith("current"):
        assert first <= today <= last
    else:
        # The previous period ends the day before the current one starts.
        current = Preset(preset.value.replace("previous", "current"))
        assert last + timedelta(days=1) == preset_window(current, today)[0]


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        # 23:30 local on 31 March (CEST, +2) is 21:30 UTC.
        (datetime(2024, 3, 31, 21, 30, tzinfo=UTC), "Europe/Berlin", date(2024, 3, 31)),
        # 00:30 local on 1 April is still 31 March in UTC.
        (datetime(2024, 3, 31, 22, 30, tzinfo=UTC), "Europe/Berlin", date(2024, 4, 1)),
        # 23:30 local on 31 January (CET, +1) is 22:30 UTC the same day.
        (datetime(2024, 1, 31, 22, 30, tzinfo=UTC), "Europe/Berlin", date(2024, 1, 31)),
        (datetime(2024, 1, 31, 23, 30, tzinfo=UTC), "Europe/Berlin", date(2024, 2, 1)),
        (datetime(2024, 1, 31, 23, 30), "UTC", date(2024, 1, 31)),  # naive = UTC
        (datetime(2024, 6, 30, 23, 0, tzinfo=UTC), "America/New_York", date(2024, 6, 30)),
    ],
)
def test_local_day(instant: datetime, zone: str, expected: date) -> None:
    assert local_day(instant, ZoneInfo(zone)) == expected


@pytest.mark.parametrize(
    ("day", "zone", "expected"),
    [
        (date(2024, 3, 30), "Europe/Berlin", datetime(2024, 3, 29, 23, 0, tzinfo=UTC)),
        # Spring forward on 31 March 2024 at 02:00: the day has 23 hours.
        (date(2024, 3, 31), "Europe/Berlin", datetime(2024, 3, 30, 23, 0, tzinfo=UTC)),
        (date(2024, 4, 1), "Europe/Berlin", datetime(2024, 3, 31, 22, 0, tzinfo=UTC)),
        # Fall back on 27 October 2024 at 03:00: the day has 25 hours.
        (date(2024, 10, 27), "Europe/Berlin", datetime(2024, 10, 26, 22, 0, tzinfo=UTC)),
        (date(2024, 10, 28), "Europe/Berlin", datetime(2024, 10, 27, 23, 0, tzinfo=UTC)),
        # Brazil 2018: clocks jumped from 00:00 to 01:00, so the day began at 01:00.
        (date(2018, 11, 4), "America/Sao_Paulo", datetime(2018, 11, 4, 3, 0, tzinfo=UTC)),
        # Samoa skipped 30 December 2011: it "starts" when 31 December does.
        (date(2011, 12, 30), "Pacific/Apia", datetime(2011, 12, 30, 10, 0, tzinfo=UTC)),
        (date(2011, 12, 31), "Pacific/Apia", datetime(2011, 12, 30, 10, 0, tzinfo=UTC)),
        (date(1, 1, 1), "Asia/Tokyo", None),  # local mean time +9:18 is before datetime.min
    ],
)
def test_day_start_utc(day: date, zone: str, expected: datetime | None) -> None:
    assert day_start_utc(day, ZoneInfo(zone)) == expected


ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/Sao_Paulo",
    "America/Santiago",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Asia/Kolkata",
    "America/Havana",
]

# Instants near DST changes are where the interesting cases are; mix them in.
_berlin_changes = [
    datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
    datetime(2024, 10, 27, 1, 0, tzinfo=UTC),
    datetime(2011, 12, 30, 10, 0, tzinfo=UTC),
    datetime(2018, 11, 4, 3, 0, tzinfo=UTC),
]
instants = st.one_of(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2040, 1, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    st.tuples(st.sampled_from(_berlin_changes), st.integers(-30 * 3600, 30 * 3600)).map(
        lambda p: p[0] + timedelta(seconds=p[1])
    ),
)


@given(instant=instants, offset=st.integers(-3, 3), zone=st.sampled_from(ZONES))
@settings(max_examples=400)
def test_day_start_is_the_exact_bound(instant: datetime, offset: int, zone: str) -> None:
    """t >= day_start_utc(d) exactly when t's local day is d or later."""
    tz = ZoneInfo(zone)
    day = local_day(instant, tz) + timedelta(days=offset)
    start = day_start_utc(day, tz)
    assert start is not None
    assert (instant >= start) == (local_day(instant, tz) >= day)


@given(
    instant=instants,
    first=st.integers(-40, 5),
    length=st.integers(0, 40),
    zone=st.sampled_from(ZONES),
)
@settings(max_examples=300)
def test_window_utc_bounds_match_local_days(
    instant: datetime, first: int, length: int, zone: str
) -> None:
    tz = ZoneInfo(zone)
    day = local_day(instant, tz)
    window = DayWindow(day + timedelta(days=first), day + timedelta(days=first + length))
    lo, hi = window.utc_bounds(tz)
    assert lo is not None and hi is not None
    assert (lo <= instant < hi) == window.contains(day)


def test_open_windows() -> None:
    assert DayWindow(None, date(2024, 1, 1)).utc_bounds(BERLIN) == (
        None,
        datetime(2024, 1, 1, 23, 0, tzinfo=UTC),
    )
    assert DayWindow(date(2024, 1, 1), date.max).utc_bounds(BERLIN)[1] is None
    assert DayWindow(date.min, None).utc_bounds(ZoneInfo("Asia/Tokyo")) == (None, None)
    assert DayWindow(date(2024, 1, 1), None).contains(date(9999, 12, 31))
    assert not DayWindow(date(2024, 1, 1), None).contains(date(2023, 12, 31))
