"""Deciding, per document, whether an export account takes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from invoicesync.plugins.models import Document

from .config import OriginsMode, RestrictionsConfig


@dataclass(frozen=True)
class Check:
    """One restriction check's outcome for one document."""

    name: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """The verdict: exported iff every check passed."""

    export: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def deciding(self) -> Check | None:
        """The first failed check, or None when the document goes."""
        return next((c for c in self.checks if not c.passed), None)


class Evaluator:
    """A compiled ``restrictions:`` block."""

    def __init__(self, config: RestrictionsConfig | None, tz: ZoneInfo) -> None:
        self.config = config or RestrictionsConfig()
        self.tz = tz

    def evaluate(self, document: Document, now: datetime) -> Decision:
        checks: list[Check] = []
        origins = self.config.origins
        if origins is not None:
            in_list = document.source in origins.sources or (
                document.company is not None and document.company in origins.companies
            )
            where = f"source {document.source!r}, company {document.company!r}"
            if origins.mode is OriginsMode.INCLUDE:
                checks.append(
                    Check(
                        "origins",
                        in_list,
                        f"{where} {'is' if in_list else 'is not'} in the include list",
                    )
                )
            else:
                checks.append(
                    Check(
                        "origins",
                        not in_list,
                        f"{where} {'is' if in_list else 'is not'} in the exclude list",
                    )
                )
        if not checks:
            checks.append(Check("all", True, "no restrictions: the account syncs every document"))
        return Decision(all(c.passed for c in checks), checks)

    def sql_filter(self, documents: sa.Table, now: datetime) -> sa.ColumnElement[bool] | None:
        """A WHERE clause that selects a superset of the documents ``evaluate`` accepts.

        None means "no pre-filter". Every verdict still comes from ``evaluate``.
        """
        return None


def compile_restrictions(
    config: RestrictionsConfig | None, tz: ZoneInfo, checks: dict[str, Any] | None = None
) -> Evaluator:
    """Build the evaluator for one account (validation already happened in the config)."""
    return Evaluator(config, tz)
