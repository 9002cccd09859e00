"""The ledger: per (export account, document), what happened (SPEC section 1).

An export is recorded in two steps so that a crash between them is harmless:
``reserve`` commits the intent (state ``exporting``, with the remote name)
*before* the target is called, ``mark_exported`` commits the outcome after.
A row left in ``exporting`` by a crash is exported again to the same name,
which targets overwrite atomically: the target ends with one copy, and the
ledger and the target agree again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
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
) -> str | None:
    """The first of ``names`` that is held by nobody or ``document_id`` itself."""
    for name in names:
        if name in taken:
            continue
        holder = conn.execute(_NAME_HOLDER, {"acc": account, "name": name}).scalar_one_or_none()
        if holder in (None, document_id):
            return name
    return None


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
        try:
            params = dict(
                state=LedgerState.EXPORTING.value,
                revision=revision,
                sha256=sha256,
                remote_name=remote_name,
                updated_at=now,
            )
            with self.engine.begin() as conn:
                updated = conn.execute(_RESERVE, {"acc": account, "doc": document_id, **params})
                if updated.rowcount == 0:
                    conn.execute(
                        _INSERT,
                        dict(account=account, document_id=document_id, attempts=0, **params),
                    )
        except sa.exc.IntegrityError as exc:
            raise NameTaken(remote_name) from exc

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
        params = dict(
            state=LedgerState.EXPORTING.value,
            revision=revision,
            sha256=sha256,
            updated_at=now,
        )
        try:
            with self.engine.begin() as conn:
                name = _first_free(conn, account, document_id, names, ())
                if name is not None:
                    row = {**params, "remote_name": name}
                    updated = conn.execute(_RESERVE, {"acc": account, "doc": document_id, **row})
                    if updated.rowcount == 0:
                        conn.execute(
                            _INSERT,
                            dict(account=account, document_id=document_id, attempts=0, **row),
                        )
                    return name
        except sa.exc.IntegrityError as exc:
            raise NameTaken(document_id) from exc
        return None

    def mark_exported(
        self, account: str, document_id: str, sha256: str, remote_ref: str, now: datetime
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                _MARK_EXPORTED,
                {
                    "acc": account,
                    "doc": document_id,
                    "ref": remote_ref,
                    "exported": sha256,
                    "at": now,
                },
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
        with self.engine.begin() as conn:
            conn.execute(
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
