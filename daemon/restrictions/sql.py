"""Pushing the origins and period checks into the SQL that selects candidates.

Each function returns a dialect-neutral SQLAlchemy Core condition over the
``documents`` table (``invoicesync.daemon.storage.schema``) that is true for
exactly the rows whose check passes in :mod:`.evaluator` -- not roughly, so a
sync that selects with it and then evaluates each row gives the same verdicts
as evaluating every document. ``tests/restrictions/test_sql_pushdown.py``
checks this on SQLite and PostgreSQL with random documents and restrictions.

Three details keep the verdicts identical:

* SQL's three-valued logic: ``company NOT IN (...)`` is NULL (not true) for a
  document without a company, so the exclude form says ``company IS NULL OR``
  explicitly.
* Import dates are stored as naive UTC instants while the period is in local
  days. The day bounds are converted to UTC instants in Python (exact across
  DST changes and skipped days) and compared as a half-open range.
* Document dates are SQL ``DATE`` values compared with date parameters; on
  SQLite both are ISO strings, whose order is the calendar order.
"""

from __future__ import annotations

from collections.abc import Collection
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from .periods import DayWindow

__all__ = ["document_date_clause", "import_date_clause", "origins_clause"]


def origins_clause(
    documents: sa.Table,
    *,
    include: bool,
    sources: Collection[str],
    companies: Collection[str],
) -> sa.ColumnElement[bool] | None:
    """Source in ``sources`` or company in ``companies`` (or the negation for exclude).

    None when the condition is always true (an empty exclude list).
    """
    source, company = documents.c.source, documents.c.company
    src, comp = sorted(sources), sorted(companies)
    if include:
        parts: list[sa.ColumnElement[bool]] = []
        if src:
            parts.append(source.in_(src))
        if comp:
            # NULL IN (...) is NULL, which OR and WHERE treat as false: right.
            parts.append(company.in_(comp))
        if not parts:  # validation forbids it; keep the meaning anyway
            return sa.false()
        return parts[0] if len(parts) == 1 else sa.or_(*parts)
    parts = []
    if src:
        parts.append(source.not_in(src))
    if comp:
        parts.append(sa.or_(company.is_(None), company.not_in(comp)))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else sa.and_(*parts)


def document_date_clause(
    documents: sa.Table, window: DayWindow, *, missing_ok: bool
) -> sa.ColumnElement[bool]:
    """``document_date`` within the inclusive window; NULL passes iff ``missing_ok``."""
    column = documents.c.document_date
    parts: list[sa.ColumnElement[bool]] = []
    if window.first is not None:
        parts.append(column >= window.first)
    if window.last is not None:
        parts.append(column <= window.last)
    in_window = sa.and_(*parts) if parts else column.is_not(None)
    return sa.or_(column.is_(None), in_window) if missing_ok else in_window


def import_date_clause(
    documents: sa.Table, window: DayWindow, tz: ZoneInfo
) -> sa.ColumnElement[bool]:
    """The import timestamp's local day (in ``tz``) within the inclusive window.

    ``lo <= import_date < hi`` with ``lo``/``hi`` the UTC instants at which
    the first day and the day after the last begin; the column's type turns
    them into naive UTC as stored.
    """
    column = documents.c.import_date
    lo, hi = window.utc_bounds(tz)
    parts: list[sa.ColumnElement[bool]] = []
    if lo is not None:
        parts.append(column >= lo)
    if hi is not None:
        parts.append(column < hi)
    return sa.and_(*parts) if parts else sa.true()
