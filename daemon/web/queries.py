"""The account page's document list: filtered, keyset-paged, fast on large catalogs.

A document's state in an account is its ledger state (``exported``,
``failed``, ``rejected``, ``exporting``) or, without a ledger row -- or with
an exported row whose content has changed since -- what the restrictions say
now: ``pending`` or ``excluded`` (the same rule as ``invoicesync documents``).

Pages are keyset-paged by document id (``after=ID``): each page is one
indexed range scan however deep the user pages, never an ``OFFSET``. Ledger
states filter in SQL. ``pending`` and ``excluded`` need the evaluator, so
those pages scan a bounded number of rows (:data:`SCAN_LIMIT`) and end
early with a "more" link when the matches are sparse, instead of reading
the whole catalog in one request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from invoicesync.daemon.config.models import ExportConfig
from invoicesync.daemon.engine.runtime import Runtime
from invoicesync.daemon.storage.catalog import row_to_document
from invoicesync.daemon.storage.ledger import LedgerState
from invoicesync.daemon.storage.schema import documents, ledger
from invoicesync.plugins.models import Document

__all__ = ["STATES", "DocumentFilter", "DocumentPage", "DocumentRow", "account_documents"]

STATES = ("exported", "pending", "failed", "rejected", "excluded", "exporting")
#: Rows at most examined per request when the filter needs the evaluator.
SCAN_LIMIT = 1000


@dataclass(frozen=True)
class DocumentFilter:
    state: str | None = None
    source: str | None = None
    company: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    after: str | None = None


@dataclass(frozen=True)
class DocumentRow:
    document: Document
    state: str
    remote_name: str | None
    last_error: str | None


@dataclass(frozen=True)
class DocumentPage:
    rows: list[DocumentRow]
    #: The ``after`` of the next page, or None on the last page.
    next_after: str | None
    #: True when the page ended early because :data:`SCAN_LIMIT` rows were examined.
    scan_limited: bool


_LEDGER_COLUMNS = [
    ledger.c.state.label("l_state"),
    ledger.c.remote_name.label("l_remote_name"),
    ledger.c.exported_sha256.label("l_exported_sha256"),
    ledger.c.last_error.label("l_last_error"),
]


class _Row:
    def __init__(self, mapping: dict[str, object]) -> None:
        self._mapping = mapping


def account_documents(
    rt: Runtime,
    account: ExportConfig,
    flt: DocumentFilter,
    now: datetime,
    limit: int = 50,
) -> DocumentPage:
    """One page of ``account``'s documents matching ``flt``, in document id order."""
    evaluator = rt.evaluators[account.id]
    joined = documents.outerjoin(
        ledger, sa.and_(ledger.c.document_id == documents.c.id, ledger.c.account == account.id)
    )
    where: list[sa.ColumnElement[bool]] = []
    if flt.source is not None:
        where.append(documents.c.source == flt.source)
        if rt.engine.dialect.name == "sqlite":
            # Ids are SOURCE/EXTERNAL-ID: one source is one range of the primary
            # key, which pages in id order without sorting the source's
            # documents. (SQLite compares bytes; a PostgreSQL collation may
            # not, so there the source index alone serves.)
            where.append(documents.c.id > flt.source + "/")
            where.append(documents.c.id < flt.source + "0")  # "0" follows "/"
    if flt.company is not None:
        where.append(documents.c.company == flt.company)
    if flt.date_from is not None:
        where.append(documents.c.document_date >= flt.date_from)
    if flt.date_to is not None:
        where.append(documents.c.document_date <= flt.date_to)
    # "No decision recorded": no ledger row, or exported content that changed since.
    undecided = sa.or_(
        ledger.c.document_id.is_(None),
        sa.and_(
            ledger.c.state == LedgerState.EXPORTED.value,
            ledger.c.exported_sha256 != documents.c.sha256,
        ),
    )
    needs_evaluation = flt.state in ("pending", "excluded")
    if flt.state == LedgerState.EXPORTED.value:
        # Through coalesce() on purpose: most documents are exported, and the
        # (account, state) index would make the database read and sort all
        # of them for one page; walking documents in id order and probing
        # the ledger's primary key stops after a page of matches.
        where.append(sa.func.coalesce(ledger.c.state, "") == LedgerState.EXPORTED.value)
        where.append(ledger.c.exported_sha256 == documents.c.sha256)
    elif flt.state in ("failed", "rejected", "exporting"):
        where.append(ledger.c.state == flt.state)  # rare states: the index finds them
    elif needs_evaluation:
        where.append(undecided)
        pushed = evaluator.sql_filter(documents, now)
        if pushed is not None and flt.state == "pending":
            # Origins and period in SQL: documents they exclude are never loaded.
            where.append(pushed)

    rows: list[DocumentRow] = []
    after = flt.after
    scanned = 0
    batch = limit + 1 if not needs_evaluation else max(4 * limit, 200)
    while True:
        query = (
            sa.select(*documents.c, *_LEDGER_COLUMNS)
            .select_from(joined)
            .where(*where)
            .order_by(documents.c.id)
            .limit(batch)
        )
        if after is not None:
            query = query.where(documents.c.id > after)
        with rt.engine.connect() as conn:
            fetched = conn.execute(query).all()
        for record in fetched:
            scanned += 1
            mapping = dict(record._mapping)
            l_state = mapping.pop("l_state")
            remote_name = mapping.pop("l_remote_name")
            exported_sha = mapping.pop("l_exported_sha256")
            last_error = mapping.pop("l_last_error")
            doc = row_to_document(_Row(mapping))
            if l_state is None or (
                l_state == LedgerState.EXPORTED.value and exported_sha != doc.sha256
            ):
                state = "pending" if evaluator.evaluate(doc, now).export else "excluded"
            else:
                state = str(l_state)
            after = doc.id
            if flt.state is not None and state != flt.state:
                if scanned >= SCAN_LIMIT:
                    return DocumentPage(rows, after, True)
                continue
            if len(rows) == limit:
                # One more match exists: the page is full and a next page follows.
                return DocumentPage(rows, rows[-1].document.id, False)
            rows.append(DocumentRow(doc, state, remote_name, last_error))
            if needs_evaluation and scanned >= SCAN_LIMIT and len(rows) < limit:
                return DocumentPage(rows, after, True)
        if len(fetched) < batch:
            return DocumentPage(rows, None, False)
