"""Run bookkeeping in one place: counts, ok/partial/failed, the run log, ``*.finished``.

Import runs, export runs and the daemon's status line all read a run the
same way: :class:`RunOutcome` says whether it went well, :class:`RunBook`
records it (``runs`` table) and logs its ``<kind>.finished`` event.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["RunBook", "RunOutcome"]


class RunOutcome:
    """What a run's summary says about the run (mixed into the summaries).

    ``ok``: nothing failed and the run was not cut short or left to another
    process. ``status``, as recorded and logged: ``ok``; ``failed`` when the
    run as a whole failed (its source or target, a shutdown); ``partial``
    when only some documents failed.
    """

    #: The counts that mean a document failed.
    failure_counts: ClassVar[tuple[str, ...]] = ("failed",)
    #: The counts a run starts with (at zero, so that logs always carry them).
    initial_counts: ClassVar[tuple[str, ...]] = ("failed",)

    counts: Counter[str]
    error: str | None
    busy: str | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.busy is None
            and not any(self.counts[k] for k in self.failure_counts)
        )

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "failed" if self.error else "partial"

    def detail(self) -> str:
        """The counts in a few words, for the daemon's status line."""
        return ", ".join(f"{self.counts[k]} {k}" for k in self.initial_counts)


class RunBook:
    """One run's entry in the run log, from start to ``<kind>.finished``.

    ``record=False`` (a dry run of an export) keeps it out of the run log;
    the run id is then ``"dry-run"``.
    """

    def __init__(self, rt: Runtime, kind: str, subject: str, *, record: bool = True) -> None:
        self.rt = rt
        self.kind = kind
        self.record = record
        self.started = time.monotonic()
        self.run_id = rt.runs.start(kind, subject, rt.clock.now()) if record else "dry-run"

    def start_counts(self, summary: RunOutcome) -> None:
        for key in summary.initial_counts:
            summary.counts[key] = 0

    def finish(
        self,
        summary: RunOutcome,
        log: Any,
        *,
        extra_counts: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Record the outcome (unless a dry run) and log ``<kind>.finished``."""
        summary.duration_s = round(time.monotonic() - self.started, 3)
        counts: dict[str, Any] = dict(summary.counts)
        if extra_counts:
            counts.update(extra_counts)
        status = summary.status
        if self.record:
            self.rt.runs.finish(self.run_id, status, counts, self.rt.clock.now(), summary.error)
        log.info(
            f"{self.kind}.finished",
            status=status,
            duration_s=summary.duration_s,
            error=summary.error,
            **fields,
            **counts,
        )
