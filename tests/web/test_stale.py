"""Stale sources and accounts, with the clock given by the test (no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from invoicesync.daemon.config.models import ScheduleConfig
from invoicesync.daemon.scheduler.stale import StaleMonitor, default_stale_after, staleness
from invoicesync.daemon.storage.database import migrate
from invoicesync.daemon.storage.runs import RunLog

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"every": "15m"}, timedelta(minutes=45)),
        ({"every": "1d"}, timedelta(days=3)),
        ({"cron": "0 6 * * *"}, timedelta(days=3)),
        # weekdays only: the weekend (3 days) plus two usual gaps
        ({"cron": "0 6 * * 1-5"}, timedelta(days=5)),
        ({"every": "1h", "window": {"days": ["mon-fri"], "hours": "08-18"}}, None),
        ({"after_import": True}, None),
    ],
)
def test_default_stale_after(schedule: dict[str, Any], expected: timedelta | None) -> None:
    config = ScheduleConfig.model_validate(schedule)
    found = default_stale_after(config, BERLIN, T0)
    if "window" in schedule:
        # the longest gap is the weekend (Fri 17:00 -> Mon 08:00) plus twice the hour
        assert found == timedelta(hours=63) + timedelta(hours=2)
    else:
        assert found == expected
    assert default_stale_after(None, BERLIN, T0) is None


class Log:
    """A structlog-like logger that records (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []
        self.bound: dict[str, Any] = {}

    def bind(self, **fields: Any) -> Log:
        child = Log()
        child.lines = self.lines
        child.bound = {**self.bound, **fields}
        return child

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, {**self.bound, **fields}))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, {**self.bound, **fields}))


@pytest.fixture
def runs(tmp_path: Any) -> RunLog:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    migrate(engine)
    return RunLog(engine)


def run(runs: RunLog, status: str, at: datetime, kind: str = "import") -> None:
    run_id = runs.start(kind, "portal", at)
    runs.finish(run_id, status, {}, at + timedelta(seconds=5))


def test_one_event_per_episode_and_recovery(runs: RunLog) -> None:
    monitor, log = StaleMonitor(), Log()
    limit = timedelta(hours=3)

    def check(now: datetime) -> None:
        monitor.check(staleness(runs, "source", "portal", limit, now, T0), now, log)

    run(runs, "ok", T0)
    check(T0 + timedelta(hours=2))
    assert log.lines == []
    check(T0 + timedelta(hours=4))  # silent for 4 h > 3 h
    check(T0 + timedelta(hours=5))
    run(runs, "failed", T0 + timedelta(hours=5))  # a failed run does not end the episode
    check(T0 + timedelta(hours=6))
    assert [(lvl, ev) for lvl, ev, _ in log.lines] == [("warning", "source.stale")]
    fields = log.lines[0][2]
    assert fields["source"] == "portal"
    assert fields["last_success"] == (T0 + timedelta(seconds=5)).isoformat()
    assert fields["stale_after_s"] == 3 * 3600
    run(runs, "partial", T0 + timedelta(hours=7))  # partial: the source answered
    check(T0 + timedelta(hours=7, minutes=1))
    assert [ev for _l, ev, _ in log.lines] == ["source.stale", "source.recovered"]
    assert log.lines[1][2]["stale_for_s"] == 3 * 3600 + 60
    check(T0 + timedelta(hours=11))  # a second episode is logged again
    assert [ev for _l, ev, _ in log.lines][-1] == "source.stale"


def test_never_successful_counts_from_the_first_run_or_the_start(runs: RunLog) -> None:
    limit = timedelta(hours=1)
    state = staleness(runs, "source", "portal", limit, T0 + timedelta(hours=2), started_at=None)
    assert not state.stale and state.since is None  # nothing to count from
    started = staleness(runs, "source", "portal", limit, T0 + timedelta(hours=2), T0)
    assert started.stale and started.since == T0 and started.last_success is None
    run(runs, "failed", T0 + timedelta(minutes=30))
    first = staleness(runs, "source", "portal", limit, T0 + timedelta(hours=1), None)
    assert not first.stale and first.since == T0 + timedelta(minutes=30)
    assert staleness(runs, "source", "portal", None, T0 + timedelta(days=9), T0).stale is False


def test_accounts_use_export_runs(runs: RunLog) -> None:
    run(runs, "ok", T0, kind="import")
    state = staleness(runs, "account", "portal", timedelta(hours=1), T0 + timedelta(hours=2), T0)
    assert state.stale and state.last_success is None
    monitor, log = StaleMonitor(), Log()
    monitor.check(state, T0, log)
    assert log.lines[0][:2] == ("warning", "account.stale")
    assert log.lines[0][2]["account"] == "portal"
