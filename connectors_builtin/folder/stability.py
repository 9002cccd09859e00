"""``stable_for``: is a file finished, or may it still be being written?

A file counts as finished when its size and modification time (and those of
its sidecar) have not changed for ``stable_for`` seconds, by the source's
clock (:attr:`ConnectorContext.now`). Two ways to know that:

- **by mtime**: the newest mtime is at least ``stable_for`` in the past.
  This settles almost every file at once, also on the first fetch after a
  restart.
- **by observation**: the source saw the same size and mtime at least
  ``stable_for`` ago. This is what settles a file whose mtime is in the
  future (a share whose server clock runs ahead, an archive extracted with
  future dates): comparing that mtime with our clock would leave it waiting
  until the clock catches up -- for ever, with a date in 2099.

Observations survive between fetches (and restarts) in a small JSON file in
the source's private state folder; only files that are still waiting are
kept in it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["StabilityTracker"]

STATE_FILE = "unstable.json"
# The follow-up fetch comes this much after the computed moment, so that it
# does not land a hair early and find the file still waiting.
_MARGIN_S = 0.05


class StabilityTracker:
    """Decides per file whether it is stable; remembers what waits."""

    def __init__(self, stable_for: float, state_dir: Path) -> None:
        self.stable_for = stable_for
        self._path = state_dir / STATE_FILE
        self._loaded: dict[str, tuple[str, float]] = self._load()
        self._waiting: dict[str, tuple[str, float]] = {}
        self.soonest: float | None = None
        """Seconds until the first waiting file may be stable (None: none waits)."""

    def _load(self) -> dict[str, tuple[str, float]]:
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # no file yet, or a damaged one: observe afresh
        seen: dict[str, tuple[str, float]] = {}
        if isinstance(raw, dict):
            for rel, value in raw.items():
                if (
                    isinstance(value, list)
                    and len(value) == 2
                    and isinstance(value[0], str)
                    and isinstance(value[1], int | float)
                    and math.isfinite(value[1])
                ):
                    seen[rel] = (value[0], float(value[1]))
        return seen

    def wait_for(self, rel: str, signature: str, newest_mtime: float, now: float) -> float | None:
        """Seconds ``rel`` must still wait, or None when it may be imported now.

        ``signature`` is anything that changes when the file or its sidecar
        changes (size and mtime in ns); ``now`` is the source's clock as a
        POSIX timestamp.
        """
        age = now - newest_mtime
        if age >= self.stable_for:
            return None
        first_seen = now
        previous = self._loaded.get(rel)
        if previous is not None and previous[0] == signature and previous[1] <= now:
            first_seen = previous[1]
        waited = now - first_seen
        if waited >= self.stable_for:
            return None
        self._waiting[rel] = (signature, first_seen)
        # A future mtime (age < 0) says nothing; then only observation counts.
        left = self.stable_for - max(waited, age) + _MARGIN_S
        self.soonest = left if self.soonest is None else min(self.soonest, left)
        return left

    def save(self) -> None:
        """Keep the observations of the files still waiting (best effort)."""
        if self._waiting == self._loaded:
            return
        try:
            if not self._waiting:
                self._path.unlink(missing_ok=True)
                return
            self._path.parent.mkdir(parents=True, exist_ok=True)
            data = {rel: [sig, seen] for rel, (sig, seen) in sorted(self._waiting.items())}
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".unstable-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh)
                os.replace(tmp, self._path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            # Losing the observations only means a file with a future mtime
            # waits stable_for once more; not worth failing an import for.
            pass
