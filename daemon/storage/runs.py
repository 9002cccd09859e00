"""Run history: one row per import or export run, for ``status`` and monitoring."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .schema import runs

#: Run statuses that count as a success: the run did not break off.
SUCCESSFUL = ("ok", "partial")


@dataclass(frozen=True)
class RunRecord:
    id: str
    kind: str
    subject: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: dict[str, Any]
    error: str | None


class RunLog:
    def __init__(self, engine: sa.Engine, scrub: Callable[[str], str] = str) -> None:
        """``scrub`` masks secrets in error texts before they are stored."""
        self.engine = engine
        self._scrub = scrub

    def start(self, kind: str, subject: str, now: datetime) -> str:
        run_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id,
                    kind=kind,
                    subject=subject,
                    started_at=now,
                    status="running",
                    counts={},
                )
            )
        return run_id

    def finish(
        self,
        run_id: str,
        status: str,
        counts: dict[str, Any],
        now: datetime,
        error: str | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(
                    finished_at=now,
                    status=status,
                    counts=counts,
                    error=None if error is None else self._scrub(error),
                )
            )

    def _one(
        self, kind: str, subject: str, *, newest: bool, successful: bool = False
    ) -> RunRecord | None:
        started = runs.c.started_at.desc() if newest else runs.c.started_at.asc()
        query = sa.select(runs).where(runs.c.kind == kind, runs.c.subject == subject)
        if successful:
            query = query.where(runs.c.status.in_(SUCCESSFUL))
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(started).limit(1)).first()
        return None if row is None else RunRecord(**row._mapping)

    def last(self, kind: str, subject: str) -> RunRecord | None:
        """The newest run of ``subject``."""
        return self._one(kind, subject, newest=True)

    def last_success(self, kind: str, subject: str) -> RunRecord | None:
        """The newest run of ``subject`` that did not break off (``ok`` or ``partial``).

        A ``partial`` run reached its source or target and only some documents
        failed (those have their own events): the connection itself works,
        which is what staleness asks about.
        """
        return self._one(kind, subject, newest=True, successful=True)

    def first(self, kind: str, subject: str) -> RunRecord | None:
        """The oldest run of ``subject``."""
        return self._one(kind, subject, newest=False)

    def recent(
        self, limit: int, kind: str | None = None, subject: str | None = None
    ) -> list[RunRecord]:
        """The newest ``limit`` runs, newest first (optionally of one kind or subject)."""
        query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.id).limit(limit)
        if kind is not None:
            query = query.where(runs.c.kind == kind)
        if subject is not None:
            query = query.where(runs.c.subject == subject)
        with self.engine.connect() as conn:
            return [RunRecord(**row._mapping) for row in conn.execute(query)]
