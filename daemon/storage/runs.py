"""Run history: one row per import or export run, for ``status`` and monitoring."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from .schema import runs


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

    def last(self, kind: str, subject: str) -> RunRecord | None:
        query = (
            sa.select(runs)
            .where(runs.c.kind == kind, runs.c.subject == subject)
            .order_by(runs.c.started_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else RunRecord(**row._mapping)

    def last_success(self, kind: str, subject: str) -> RunRecord | None:
        """The newest run of ``subject`` that finished without a failure."""
        query = (
            sa.select(runs)
            .where(runs.c.kind == kind, runs.c.subject == subject, runs.c.status == "ok")
            .order_by(runs.c.started_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else RunRecord(**row._mapping)
