"""The documents an export account should consider: one query, owned by storage.

A candidate is a document with no ledger row in the account, a row left
``exporting`` by a crash, a ``failed`` row that is due, or (unless updates are
ignored) an ``exported`` row whose content changed since. Rejected documents
wait for ``invoicesync retry``. The caller may AND in a filter of its own on
the ``documents`` table (the restriction evaluator's origins and period
checks), so excluded documents are never loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from invoicesync.plugins.models import Document

from .catalog import document_from_mapping
from .ledger import LedgerState
from .schema import documents, ledger

__all__ = [
    "BATCH",
    "Candidate",
    "DocumentFilter",
    "candidates",
    "count_candidates",
    "count_failing",
]

#: Rows per query: keyset pagination keeps no read transaction open for long.
BATCH = 500

#: Builds a WHERE clause on the ``documents`` table (None: no filter).
DocumentFilter = Callable[[sa.Table], sa.ColumnElement[bool] | None]


@dataclass(frozen=True)
class Candidate:
    """A document that may need exporting, with what the ledger says of it."""

    document: Document
    state: LedgerState | None
    """None: never exported to this account."""
    remote_name: str | None
    """The name the document already holds in this account, if any."""
    exported_sha256: str | None


def _candidate_query(
    account: str, now: datetime, include_changed: bool, restrict: DocumentFilter | None
) -> tuple[sa.FromClause, sa.ColumnElement[bool]]:
    """The FROM and WHERE of :func:`candidates`."""
    joined = documents.outerjoin(
        ledger, sa.and_(ledger.c.document_id == documents.c.id, ledger.c.account == account)
    )
    conditions = [
        ledger.c.document_id.is_(None),
        ledger.c.state == LedgerState.EXPORTING.value,
        sa.and_(
            ledger.c.state == LedgerState.FAILED.value,
            sa.or_(ledger.c.next_attempt_at.is_(None), ledger.c.next_attempt_at <= now),
        ),
    ]
    if include_changed:
        conditions.append(
            sa.and_(
                ledger.c.state == LedgerState.EXPORTED.value,
                ledger.c.exported_sha256 != documents.c.sha256,
            )
        )
    condition: sa.ColumnElement[bool] = sa.or_(*conditions)
    extra = restrict(documents) if restrict is not None else None
    if extra is not None:
        condition = sa.and_(condition, extra)
    return joined, condition


def count_candidates(
    engine: sa.Engine,
    account: str,
    now: datetime,
    *,
    include_changed: bool = True,
    restrict: DocumentFilter | None = None,
) -> int:
    """How many documents :func:`candidates` yields with the same arguments."""
    joined, condition = _candidate_query(account, now, include_changed, restrict)
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(joined).where(condition)
        return int(conn.execute(query).scalar_one())


def count_failing(
    engine: sa.Engine,
    account: str,
    now: datetime,
    filters: Sequence[tuple[str, sa.ColumnElement[bool]]],
    *,
    include_changed: bool = True,
) -> dict[str, int]:
    """Per named filter, the candidates whose first failed filter it is, in one query.

    A NULL verdict fails, as it does in a WHERE clause. Used to count what an
    export run's SQL pre-filter drops without loading those documents.
    """
    if not filters:
        return {}
    joined, condition = _candidate_query(account, now, include_changed, None)
    sums = []
    for i, (_name, clause) in enumerate(filters):
        fails_here: sa.ColumnElement[int] = sa.case((clause, 0), else_=1)
        earlier = [c for _n, c in filters[:i]]
        if earlier:
            fails_here = sa.case((sa.and_(*earlier), fails_here), else_=0)
        sums.append(sa.func.coalesce(sa.func.sum(fails_here), 0))
    with engine.connect() as conn:
        row = conn.execute(sa.select(*sums).select_from(joined).where(condition)).one()
    return {name: int(n) for (name, _c), n in zip(filters, row, strict=True) if n}


def candidates(
    engine: sa.Engine,
    account: str,
    now: datetime,
    *,
    include_changed: bool = True,
    restrict: DocumentFilter | None = None,
    batch: int = BATCH,
) -> Iterator[Candidate]:
    """The candidates of ``account`` at ``now`` in document id order, in batches.

    ``include_changed``: whether exported documents with new content count
    (``on_update: export``). ``restrict`` adds the caller's filter on the
    ``documents`` table.
    """
    joined, condition = _candidate_query(account, now, include_changed, restrict)
    columns = [
        *documents.c,
        ledger.c.state.label("ledger_state"),
        ledger.c.remote_name.label("ledger_remote_name"),
        ledger.c.exported_sha256.label("ledger_exported_sha256"),
    ]
    last: str | None = None
    while True:
        query = (
            sa.select(*columns).select_from(joined).where(condition).order_by(documents.c.id)
        ).limit(batch)
        if last is not None:
            query = query.where(documents.c.id > last)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            mapping = dict(row._mapping)
            state = mapping.pop("ledger_state")
            remote_name = mapping.pop("ledger_remote_name")
            exported = mapping.pop("ledger_exported_sha256")
            yield Candidate(
                document_from_mapping(mapping),
                LedgerState(state) if state else None,
                remote_name,
                exported,
            )
        if len(rows) < batch:
            return
        last = rows[-1].id
