"""Run locks (one machine: flock files; N nodes: PostgreSQL advisory locks) and
``Catalog.store`` (and a batch of ``Catalog.batch``) against a concurrent insert
of the same document.

Every interleaving is forced: a second lock attempt is made while the first
is held, a waiter is released from its ``on_wait`` callback, the competing
insert runs from inside the first insert's ``before_cursor_execute``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from invoicesync.daemon.engine.failures import describe_error, report_connector_error
from invoicesync.daemon.engine.locks import (
    Busy,
    FileRunLocks,
    Holder,
    LockWait,
    PostgresRunLocks,
    RunLocks,
)
from invoicesync.daemon.storage.blobs import BlobStore
from invoicesync.daemon.storage.catalog import Catalog, ImportOutcome, ImportStatus
from invoicesync.daemon.storage.database import create_engine
from invoicesync.plugins.models import DocumentMetadata, SourceDocument

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

LockFactory = Callable[[str], RunLocks]


@pytest.fixture(params=["file", "postgresql"])
def make_locks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LockFactory]:
    """``make_locks(command)``: a RunLocks of one shared state, per backend."""
    made: list[RunLocks] = []
    engine: sa.Engine | None = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        engine = create_engine(url)

    def make(command: str) -> RunLocks:
        locks: RunLocks
        if engine is not None:
            locks = PostgresRunLocks(engine, command)
        else:
            locks = FileRunLocks(tmp_path / "state" / "locks", command)
        made.append(locks)
        return locks

    yield make
    for locks in made:
        locks.close()
    if engine is not None:
        engine.dispose()


def test_a_held_lock_is_busy_elsewhere_and_names_its_holder(make_locks: LockFactory) -> None:
    first, second = make_locks("sync"), make_locks("retry")
    lease = first.acquire("account", "archive")
    with pytest.raises(Busy) as caught:
        second.acquire("account", "archive")
    holder = caught.value.holder
    assert holder.pid == os.getpid() and holder.command == "sync"
    assert (
        holder.since is not None and abs((datetime.now(UTC) - holder.since).total_seconds()) < 600
    )
    assert str(caught.value).startswith(
        f"account archive is busy: invoicesync sync (pid {os.getpid()}) since "
    )
    # Other subjects are independent: a source and an account of one id too.
    second.acquire("account", "other").release()
    second.acquire("source", "archive").release()
    assert second.holder("account", "archive") == holder
    lease.release()
    assert second.holder("account", "archive") is None
    second.acquire("account", "archive").release()


def test_a_waiting_run_gets_the_lock_when_the_holder_lets_go(make_locks: LockFactory) -> None:
    first, second = make_locks("run"), make_locks("sync")
    lease = first.acquire("source", "inbox")
    seen: list[Holder] = []
    got: list[Any] = []

    def on_wait(holder: Holder) -> None:
        seen.append(holder)
        lease.release()  # the holder finishes while the other one waits

    def waiter() -> None:
        got.append(second.acquire("source", "inbox", wait=LockWait(wait=True), on_wait=on_wait))

    thread = threading.Thread(target=waiter)
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and len(got) == 1
    assert seen[0].command == "run"
    with pytest.raises(Busy):
        first.acquire("source", "inbox")
    got[0].release()


def test_waiting_gives_up_on_stop_and_on_timeout(make_locks: LockFactory) -> None:
    first, second = make_locks("run"), make_locks("sync")
    with first.acquire("account", "a"):
        stop = threading.Event()
        with pytest.raises(Busy) as caught:
            second.acquire(
                "account", "a", wait=LockWait(wait=True), stop=stop, on_wait=lambda _h: stop.set()
            )
        assert caught.value.waited_s is not None
        with pytest.raises(Busy) as timed:
            second.acquire("account", "a", wait=LockWait(wait=True, timeout=0))
        assert "gave up after waiting" in str(timed.value)


_HOLD = """
import sys, time
from pathlib import Path
from invoicesync.daemon.engine.locks import FileRunLocks, PostgresRunLocks
from invoicesync.daemon.storage.database import create_engine
arg = sys.argv[1]
locks = (PostgresRunLocks(create_engine(arg), "run") if "://" in arg
         else FileRunLocks(Path(arg), "run"))
lease = locks.acquire("account", "archive")
print("held", flush=True)
time.sleep(300)
"""


def test_a_killed_holder_leaves_no_stale_lock(
    make_locks: LockFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    locks = make_locks("sync")
    where = (
        str(locks._engine.url.render_as_string(hide_password=False))
        if isinstance(locks, PostgresRunLocks)
        else str(tmp_path / "state" / "locks")
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, where], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        busy = locks.holder("account", "archive")
        assert busy is not None and busy.pid == holder.pid and busy.command == "run"
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        # The kernel (flock) or the server (the connection died) dropped it.
        lease = locks.acquire("account", "archive", wait=LockWait(wait=True, timeout=60))
        lease.release()
    finally:
        holder.kill()
        holder.wait(30)


def test_postgres_locks_of_different_schemas_do_not_meet(pg_url: str) -> None:
    other_schema = sa.make_url(pg_url).set(
        query={"options": "-csearch_path=public"}
    )  # the same database, another schema
    a = PostgresRunLocks(create_engine(pg_url), "sync")
    b = PostgresRunLocks(create_engine(other_schema.render_as_string(hide_password=False)), "sync")
    try:
        assert a.key("account", "x") != b.key("account", "x")
        with a.acquire("account", "x"):
            b.acquire("account", "x").release()
    finally:
        a.close()
        b.close()


# -- Catalog.store against a concurrent insert --------------------------------------------


def _item(number: str) -> SourceDocument:
    return SourceDocument(
        external_id="inv-1.pdf",
        filename="inv-1.pdf",
        content=b"%PDF-1.4 race",
        metadata=DocumentMetadata(number=number),
    )


def test_store_survives_a_concurrent_insert_of_the_same_document(
    restrictions_db: sa.Engine,
    tmp_path: Path,
) -> None:
    engine = restrictions_db
    catalog = Catalog(engine, BlobStore(tmp_path / "blobs"))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM document_revisions"))
        conn.execute(sa.text("DELETE FROM documents"))
    fired: list[str] = []

    def competitor(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Right before our insert of the row, another process stores the same
        # document and commits (after we found no row).
        if statement.startswith("INSERT INTO documents") and not fired:
            fired.append(statement)
            outcome = catalog.store("src", _item("A-1"), NOW)
            assert outcome.status is ImportStatus.NEW

    sa.event.listen(engine, "before_cursor_execute", competitor)
    try:
        outcome = catalog.store("src", _item("A-2"), NOW)
    finally:
        sa.event.remove(engine, "before_cursor_execute", competitor)
    assert fired
    # Our store started over and found the other's row: a metadata update.
    assert outcome.status is ImportStatus.METADATA and outcome.revision == 1
    document = catalog.get("src/inv-1.pdf")
    assert document is not None and document.number == "A-2"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM document_revisions")).scalar() == 1


def test_a_batch_survives_a_concurrent_insert_of_one_of_its_documents(
    restrictions_db: sa.Engine,
    tmp_path: Path,
) -> None:
    engine = restrictions_db
    catalog = Catalog(engine, BlobStore(tmp_path / "blobs"))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM document_revisions"))
        conn.execute(sa.text("DELETE FROM documents"))
    fired: list[str] = []

    def competitor(_conn: Any, _cursor: Any, statement: str, params: Any, *_args: Any) -> None:
        # Right before the batch inserts the contested row (its first write:
        # on SQLite no other writer can come between the batch's later
        # statements), another process stores that document and commits.
        contested = "src/inv-1.pdf" in repr(params)
        if statement.startswith("INSERT INTO documents") and contested and not fired:
            fired.append(statement)
            outcome = catalog.store("src", _item("A-1"), NOW)
            assert outcome.status is ImportStatus.NEW

    other = SourceDocument("other.pdf", "other.pdf", b"%PDF-1.4 other", cursor="c-2")
    batch = catalog.batch("src")
    batch.add(replace(_item("A-2"), cursor="c-1"), NOW)
    batch.add(other, NOW)
    sa.event.listen(engine, "before_cursor_execute", competitor)
    try:
        outcomes = batch.commit()
    finally:
        sa.event.remove(engine, "before_cursor_execute", competitor)
    assert fired
    # The batch's transaction lost the race and was rolled back; its documents
    # were then stored one by one: the contested one found the other's row.
    assert [o.status for o in outcomes if isinstance(o, ImportOutcome)] == [
        ImportStatus.METADATA,
        ImportStatus.NEW,
    ]
    document = catalog.get("src/inv-1.pdf")
    assert document is not None and document.number == "A-2"
    assert catalog.count("src") == 2 and catalog.cursor("src") == "c-2"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM document_revisions")).scalar() == 2


def test_database_errors_are_described_without_their_sql(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id TEXT PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('secret-looking-value')"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": "secret-looking-value"})
    except sa.exc.IntegrityError as exc:
        error = exc
    text = describe_error(error)
    assert text == "database error: IntegrityError: UNIQUE constraint failed: t.id"
    logged: list[dict[str, Any]] = []

    class Log:
        def error(self, event: str, **fields: Any) -> None:
            logged.append({"event": event, **fields})

    assert report_connector_error(Log(), error) == text
    assert "INSERT" not in repr(logged) and "secret-looking-value" not in repr(logged)
