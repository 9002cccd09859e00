"""Each job's next fire time, written by the daemon and read by ``status``.

A small JSON file in the state folder, replaced atomically, so that
``invoicesync status`` (another process, perhaps another user) can show
when each account next runs without talking to the daemon. It names the
daemon's pid: a file left by a daemon that is gone is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["FILENAME", "Schedule", "read_schedule", "remove_schedule", "write_schedule"]

FILENAME = "daemon-schedule.json"


@dataclass(frozen=True)
class Schedule:
    """What a running daemon published: its pid and ``job id -> next fire time``."""

    pid: int
    updated_at: datetime
    jobs: dict[str, datetime | None]

    def next_import(self) -> datetime | None:
        """The earliest next import of any source (what ``after_import`` waits for)."""
        times = [t for key, t in self.jobs.items() if key.startswith("import:") and t]
        return min(times) if times else None


def write_schedule(
    state_dir: Path, jobs: dict[str, datetime | None], now: datetime, pid: int | None = None
) -> None:
    """Atomically replace the schedule file (temporary file, fsync-free rename).

    No fsync: after a power loss a stale or missing file only makes
    ``status`` show no next run until the daemon writes it again.
    """
    data = {
        "pid": pid if pid is not None else os.getpid(),
        "updated_at": now.isoformat(),
        "jobs": {k: (v.isoformat() if v else None) for k, v in sorted(jobs.items())},
    }
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".daemon-schedule.", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
        # mkstemp made it 0600, like every file of the (0700) state folder.
        os.replace(tmp, state_dir / FILENAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_schedule(state_dir: Path) -> None:
    (state_dir / FILENAME).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user (systemd's DynamicUser)
    return True


def read_schedule(state_dir: Path) -> Schedule | None:
    """The running daemon's schedule, or None (no daemon, or an unreadable file)."""
    try:
        data = json.loads((state_dir / FILENAME).read_text(encoding="utf-8"))
        pid = int(data["pid"])
        jobs = {str(k): (datetime.fromisoformat(v) if v else None) for k, v in data["jobs"].items()}
        updated = datetime.fromisoformat(data["updated_at"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not _alive(pid):
        return None
    return Schedule(pid, updated, jobs)
