"""The ledger: per (export account, document), what happened (SPEC section 1).

An export is recorded in two steps so that a crash between them is harmless:
``reserve`` commits the intent (state ``exporting``, with the remote name)
*before* the target is called, ``mark_exported`` commits the outcome after.
A row left in ``exporting`` by a crash is exported again to the same name,
which targets overwrite atomically: the target ends with one copy, and the
ledger and the target agree again.

The export engine groups these writes (:meth:`Ledger.transaction`): the
intents of a batch of documents in one transaction, then, after the target's
durability barrier, the batch's outcomes in one more. The argument is the
same per document: every name written is first recorded as an intent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from .schema import ledger
from .types import UTCDateTime

_WHERE_ROW = sa.and_(
    ledger.c.account == sa.bindparam("acc"), ledger.c.document_id == sa.bindparam("doc")
)
_NAME_HOLDER = sa.select(ledger.c.document_id).where(
    ledger.c.account == sa.bindparam("acc"), ledger.c.remote_name == sa.bindparam("name")
)
_HOLDERS = sa.select(ledger.c.remote_name, ledger.c.document_id).where(
    ledger.c.account == sa.bindparam("acc"),
    ledger.c.remote_name.in_(sa.bindparam("names", expanding=True)),
)
_INSERT = ledger.insert()
_RESERVE = (
    ledger.update()
    .where(_WHERE_ROW)
    .values(
        {n: sa.bindparam(n) for n in ("state", "revision", "sha256", "remote_name", "updated_at")}
    )
)


class LedgerState(StrEnum):
    EXPORTING = "exporting"
    EXPORTED = "exported"
    FAILED = "failed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class LedgerEntry:
    account: str
    document_id: str
    state: LedgerState
    revision: int
    sha256: str
    remote_name: str
    remote_ref: str | None
    exported_sha256: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    first_exported_at: datetime | None
    exported_at: datetime | None
    updated_at: datetime


# Statements built once with their values as execution parameters: SQLAlchemy
# then compiles each once per process instead of once per document.
_AT = sa.bindparam("at", type_=UTCDateTime)
_MARK_EXPORTED = (
    ledger.update()
    .where(_WHERE_ROW)
    .values(
        state=LedgerState.EXPORTED.value,
        remote_ref=sa.bindparam("ref"),
        exported_sha256=sa.bindparam("exported"),
        attempts=0,
        last_error=None,
        next_attempt_at=None,
        exported_at=_AT,
        first_exported_at=sa.func.coalesce(ledger.c.first_exported_at, _AT),
        updated_at=_AT,
    )
)


def _entry(row: sa.Row[tuple[object, ...]]) -> LedgerEntry:
    data = dict(row._mapping)
    data["state"] = LedgerState(data["state"])
    return LedgerEntry(**data)


class NameTaken(Exception):
    """Another document already holds this remote name in this account."""


def _first_free(
    conn: sa.Connection,
    account: str,
    document_id: str,
    names: Iterable[str],
    taken: Collection[str],
    known: Mapping[str, str | None] | None = None,
) -> str | None:
    """The first of ``names`` that is held by nobody or ``document_id`` itself.

    ``known``: holders already known (None: free), asked for no more.
    """
    for name in names:
        if name in taken:
            continue
        if known is not None and name in known:
            holder = known[name]
        else:
            holder = conn.execute(_NAME_HOLDER, {"acc": account, "name": name}).scalar_one_or_none()
        if holder in (None, document_id):
            return name
    return None


@dataclass(frozen=True)
class Exported:
    """One document's successful export, for :meth:`LedgerTransaction.mark_exported`."""

    document_id: str
    sha256: str
    remote_ref: str


class LedgerTransaction:
    """The ledger writes of one transaction (see :meth:`Ledger.transaction`).

    For a batch of reservations it keeps what it knows of who holds which
    name (:meth:`prefetch_holders`, and every name it reserved), and it
    inserts the rows of new documents together, in one statement, when the
    transaction commits or before any other write; the unique constraint on
    (account, remote name) still decides, then as :class:`NameTaken`.
    """

    def __init__(self, conn: sa.Connection, scrub: Callable[[str], str]) -> None:
        self._conn = conn
        self._scrub = scrub
        self._known: dict[str, dict[str, str | None]] = {}
        self._inserts: list[dict[str, object]] = []

    def prefetch_holders(self, account: str, names: Collection[str]) -> None:
        """Learn who holds each of ``names`` in one query (per 500 names)."""
        known = self._known.setdefault(account, {})
        todo = [n for n in dict.fromkeys(names) if n not in known]
        for start in range(0, len(todo), 500):
            part = todo[start : start + 500]
            rows = self._conn.execute(_HOLDERS, {"acc": account, "names": part})
            found = {name: holder for name, holder in rows}
            known.update((n, found.get(n)) for n in part)

    def flush(self) -> None:
        """Insert the new documents' rows reserved so far (NameTaken if one clashes)."""
        if self._inserts:
            rows, self._inserts = self._inserts, []
            try:
                self._conn.execute(_INSERT, rows)
            except sa.exc.IntegrityError as exc:
                raise NameTaken(str(rows[0]["remote_name"])) from exc

    def _intent(self, account: str, document_id: str, row: dict[str, object], new: bool) -> None:
        """Write the ``exporting`` row; ``new``: the caller knows there is none yet."""
        conn = self._conn
        if not new:
            updated = conn.execute(_RESERVE, {"acc": account, "doc": document_id, **row})
            if updated.rowcount:
                return
        conn.execute(_INSERT, dict(account=account, document_id=document_id, attempts=0, **row))

    def reserve(
        self,
        account: str,
        document_id: str,
        revision: int,
        sha256: str,
        remote_name: str,
        now: datetime,
        *,
        new: bool = False,
        holds: str | None = None,
    ) -> None:
        """Record the intent to export under ``remote_name``; NameTaken if it is held.

        ``new``: the document has no row in this account yet; its row is
        inserted with the other new ones (see :meth:`flush`). ``holds``: the
        name it held until now, which this frees.
        """
        row = dict(
            state=LedgerState.EXPORTING.value,
            revision=revision,
            sha256=sha256,
            remote_name=remote_name,
            updated_at=now,
        )
        if new:
            self._inserts.append(dict(account=account, document_id=document_id, attempts=0, **row))
        else:
            try:
                self._intent(account, document_id, row, new)
            except sa.exc.IntegrityError as exc:
                raise NameTaken(remote_name) from exc
        known = self._known.setdefault(account, {})
        if holds is not None and holds != remote_name:
            known[holds] = None
        known[remote_name] = document_id

    def reserve_free(
        self,
        account: str,
        document_id: str,
        revision: int,
        sha256: str,
        names: Iterable[str],
        now: datetime,
        *,
        new: bool = False,
        holds: str | None = None,
    ) -> str | None:
        """Reserve the first of ``names`` nobody else holds (see :meth:`Ledger.reserve_free`)."""
        known = self._known.get(account)
        name = _first_free(self._conn, account, document_id, names, (), known)
        if name is not None:
            self.reserve(account, document_id, revision, sha256, name, now, new=new, holds=holds)
        return name

    def mark_exported(self, account: str, rows: Sequence[Exported], now: datetime) -> None:
        """Record successful exports: one statement for all of ``rows``."""
        self.flush()
        if rows:
            self._conn.execute(
                _MARK_EXPORTED,
                [
                    {
                        "acc": account,
                        "doc": r.document_id,
                        "ref": r.remote_ref,
                        "exported": r.sha256,
                        "at": now,
                    }
                    for r in rows
                ],
            )

    def mark_failed(
        self,
        account: str,
        document_id: str,
        error: str,
        attempts: int,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> None:
        self._set_problem(
            account, document_id, LedgerState.FAILED, error, attempts, next_attempt_at, now
        )

    def mark_rejected(
        self, account: str, document_id: str, reason: str, attempts: int, now: datetime
    ) -> None:
        self._set_problem(account, document_id, LedgerState.REJECTED, reason, attempts, None, now)

    def _set_problem(
        self,
        account: str,
        document_id: str,
        state: LedgerState,
        error: str,
        attempts: int,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> None:
        self.flush()
        self._conn.execute(
            ledger.update()
            .where(ledger.c.account == account, ledger.c.document_id == document_id)
            .values(
                state=state.value,
                last_error=self._scrub(error)[:2000],
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                updated_at=now,
            )
        )

    def release(self, account: str, document_ids: Collection[str]) -> None:
        """Drop the intents of documents that had no row before and were never tried.

        For a run that stops early (shutdown, too many failures) after it
        reserved names for a batch: those documents stay simply pending, as
        if the run had not reached them.
        """
        self.flush()
        if document_ids:
            self._conn.execute(
                ledger.delete().where(
                    ledger.c.account == account,
                    ledger.c.document_id.in_(list(document_ids)),
                    ledger.c.state == LedgerState.EXPORTING.value,
                )
            )


class Ledger:
    """Reads and writes the ``ledger`` table."""

    def __init__(self, engine: sa.Engine, scrub: Callable[[str], str] = str) -> None:
        """``scrub`` masks secrets in error texts before they are stored."""
        self.engine = engine
        self._scrub = scrub

    def entry(self, account: str, document_id: str) -> LedgerEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(ledger).where(
                    ledger.c.account == account, ledger.c.document_id == document_id
                )
            ).first()
        return None if row is None else _entry(row)

    def entries(self, account: str) -> Iterator[LedgerEntry]:
        with self.engine.connect() as conn:
            for row in conn.execute(
                sa.select(ledger).where(ledger.c.account == account).order_by(ledger.c.document_id)
            ):
                yield _entry(row)

    @contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        """One transaction for many writes (group commit); commits on success.

        On an exception nothing of it is kept. :class:`NameTaken` from a
        reservation inside aborts the whole transaction too.
        """
        with self.engine.begin() as conn:
            tx = LedgerTransaction(conn, self._scrub)
            yield tx
            tx.flush()

    def reserve(
        self,
        account: str,
        document_id: str,
        revision: int,
        sha256: str,
        remote_name: str,
        now: datetime,
    ) -> None:
        """Record the intent to export; raises NameTaken if the name is held."""
        with self.transaction() as tx:
            tx.reserve(account, document_id, revision, sha256, remote_name, now)

    def free_name(
        self,
        account: str,
        document_id: str,
        names: Iterable[str],
        taken: Collection[str] = (),
    ) -> str | None:
        """The first of ``names`` no other document holds and not in ``taken``.

        Read-only: what a dry run plans (``taken`` holds the names it planned
        already). A real run chooses and reserves in one step,
        :meth:`reserve_free`; both choose with :func:`_first_free`.
        """
        with self.engine.connect() as conn:
            return _first_free(conn, account, document_id, names, taken)

    def reserve_free(
        self,
        account: str,
        document_id: str,
        revision: int,
        sha256: str,
        names: Iterable[str],
        now: datetime,
    ) -> str | None:
        """Reserve the first of ``names`` that no other document holds; return it.

        The same as :meth:`free_name`, then :meth:`reserve` of that name, but
        in one transaction (one round trip to the pool and one commit per
        document instead of two). Returns None when every name is held by
        another document; raises NameTaken when a concurrent writer took the
        chosen name between the check and the write (the unique constraint
        still decides, as with :meth:`reserve`).
        """
        with self.transaction() as tx:
            return tx.reserve_free(account, document_id, revision, sha256, names, now)

    def mark_exported(
        self, account: str, document_id: str, sha256: str, remote_ref: str, now: datetime
    ) -> None:
        with self.transaction() as tx:
            tx.mark_exported(account, [Exported(document_id, sha256, remote_ref)], now)

    def mark_failed(
        self,
        account: str,
        document_id: str,
        error: str,
        attempts: int,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> None:
        with self.transaction() as tx:
            tx.mark_failed(account, document_id, error, attempts, next_attempt_at, now)

    def mark_rejected(
        self, account: str, document_id: str, reason: str, attempts: int, now: datetime
    ) -> None:
        with self.transaction() as tx:
            tx.mark_rejected(account, document_id, reason, attempts, now)

    def reset_for_retry(self, account: str, now: datetime) -> int:
        """Put failed and rejected documents back in line; returns how many."""
        with self.engine.begin() as conn:
            result = conn.execute(
                ledger.update()
                .where(
                    ledger.c.account == account,
                    ledger.c.state.in_([LedgerState.FAILED.value, LedgerState.REJECTED.value]),
                )
                .values(
                    state=LedgerState.FAILED.value,
                    attempts=0,
                    next_attempt_at=None,
                    updated_at=now,
                )
            )
            return int(result.rowcount)

    def counts(self, account: str) -> dict[LedgerState, int]:
        """How many documents are in each state for ``account``."""
        query = (
            sa.select(ledger.c.state, sa.func.count())
            .where(ledger.c.account == account)
            .group_by(ledger.c.state)
        )
        with self.engine.connect() as conn:
            found = {LedgerState(state): int(n) for state, n in conn.execute(query)}
        return {state: found.get(state, 0) for state in LedgerState}
