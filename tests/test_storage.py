"""The schema, its migrations, the blob store, the catalog and the ledger."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from invoicesync.daemon.storage.blobs import BlobStore
from invoicesync.daemon.storage.catalog import Catalog, ImportOutcome, ImportStatus
from invoicesync.daemon.storage.database import open_database
from invoicesync.daemon.storage.ledger import Ledger, LedgerState, NameTaken
from invoicesync.daemon.storage.schema import metadata
from invoicesync.plugins.models import DocumentMetadata, SourceDocument

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_database(tmp_path / "state")


@pytest.fixture
def catalog(engine: sa.Engine, tmp_path: Path) -> Catalog:
    return Catalog(engine, BlobStore(tmp_path / "state" / "blobs"))


def test_migrations_create_exactly_the_declared_schema(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    open_database(tmp_path / "s").dispose()
    engine = open_database(tmp_path / "s")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1


def test_blob_store_is_content_addressed_and_deduplicates(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = b"%PDF-1.4 hello"
    sha, size = blobs.put(data)
    assert sha == hashlib.sha256(data).hexdigest() and size == len(data)
    source = tmp_path / "in.pdf"
    source.write_bytes(data)
    assert blobs.put(source) == (sha, size)
    assert blobs.path(sha).read_bytes() == data
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [blobs.path(sha)]


def test_dry_blob_store_only_hashes(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", write=False)
    sha, _ = blobs.put(b"abc")
    assert not blobs.exists(sha)
    assert not (tmp_path / "blobs").exists()


def _item(content: bytes, **meta: object) -> SourceDocument:
    return SourceDocument(
        "inv-1.pdf", "inv-1.pdf", content, metadata=DocumentMetadata.model_validate(meta)
    )


def test_catalog_tracks_new_revisions_and_metadata_changes(catalog: Catalog) -> None:
    first = catalog.store("portal", _item(b"v1", number="A-1"), NOW)
    assert (first.status, first.revision) == (ImportStatus.NEW, 1)
    same = catalog.store("portal", _item(b"v1", number="A-1"), NOW + timedelta(hours=1))
    assert same.status is ImportStatus.UNCHANGED
    meta = catalog.store("portal", _item(b"v1", number="A-2"), NOW + timedelta(hours=2))
    assert (meta.status, meta.revision) == (ImportStatus.METADATA, 1)
    changed = catalog.store("portal", _item(b"v2", number="A-2"), NOW + timedelta(hours=3))
    assert (changed.status, changed.revision) == (ImportStatus.NEW_REVISION, 2)
    doc = catalog.get("portal/inv-1.pdf")
    assert doc is not None
    assert doc.number == "A-2" and doc.revision == 2
    assert doc.import_date == NOW  # set once, on first import
    assert doc.sha256 == hashlib.sha256(b"v2").hexdigest()


def test_catalog_keeps_amounts_exact(catalog: Catalog) -> None:
    catalog.store("p", _item(b"x", gross_amount="0.10", net_amount="1234567890.123"), NOW)
    doc = catalog.get("p/inv-1.pdf")
    assert doc is not None
    assert str(doc.gross_amount) == "0.10" and str(doc.net_amount) == "1234567890.123"


def test_checkpoint_cursor_commits_with_the_document(catalog: Catalog) -> None:
    item = SourceDocument("a", "a.pdf", b"a", cursor="after-a")
    catalog.store("p", item, NOW)
    assert catalog.cursor("p") == "after-a"


def test_ledger_reserves_names_uniquely_per_account(catalog: Catalog, engine: sa.Engine) -> None:
    catalog.store("p", SourceDocument("a", "a.pdf", b"a"), NOW)
    catalog.store("p", SourceDocument("b", "b.pdf", b"b"), NOW)
    ledger = Ledger(engine)
    ledger.reserve("acc", "p/a", 1, "sha-a", "x.pdf", NOW)
    with pytest.raises(NameTaken):
        ledger.reserve("acc", "p/b", 1, "sha-b", "x.pdf", NOW)
    ledger.reserve("other", "p/b", 1, "sha-b", "x.pdf", NOW)  # another account: fine
    ledger.mark_exported("acc", "p/a", "sha-a", "ref", NOW)
    entry = ledger.entry("acc", "p/a")
    assert entry is not None and entry.state is LedgerState.EXPORTED
    assert entry.first_exported_at == NOW
    assert ledger.counts("acc")[LedgerState.EXPORTED] == 1


def test_a_damaged_page_found_mid_run_is_reported_as_such(tmp_path: Path) -> None:
    """A job that hits a corrupt page says what to do, not just "DatabaseError"."""
    from invoicesync.daemon.engine.failures import describe_error

    bad = tmp_path / "catalog.sqlite3"
    bad.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    engine = sa.create_engine(f"sqlite:///{bad}")
    with pytest.raises(sa.exc.DatabaseError) as caught, engine.connect() as connection:
        connection.exec_driver_sql("SELECT * FROM sqlite_master").fetchall()
    engine.dispose()
    text = describe_error(caught.value)
    assert text.startswith("the state database is damaged (")
    assert text.endswith("restore it from a backup (see docs/operations.md)")
    assert "SELECT" not in text


# -- group commit (Catalog.batch) -------------------------------------------------------


def _invoice(external_id: str, content: bytes, number: str) -> SourceDocument:
    meta = DocumentMetadata.model_validate(
        {
            "number": number,
            "gross_amount": "119.00",
            "currency": "EUR",
            "fields": {"seller_vat_id": "DE123456789"},
        }
    )
    return SourceDocument(external_id, external_id, content, metadata=meta)


def test_a_batch_commits_its_documents_and_last_cursor_together(catalog: Catalog) -> None:
    batch = catalog.batch("p")
    batch.add(SourceDocument("a", "a.pdf", b"a", cursor="after-a"), NOW)
    batch.checkpoint("after-skipped", NOW)
    batch.add(SourceDocument("b", "b.pdf", b"b"), NOW)
    # Written, not committed: no row, no cursor yet.
    assert catalog.count("p") == 0 and catalog.cursor("p") is None
    outcomes = batch.commit()
    assert [(o.status, o.document_id) for o in outcomes if isinstance(o, ImportOutcome)] == [
        (ImportStatus.NEW, "p/a"),
        (ImportStatus.NEW, "p/b"),
    ]
    assert catalog.count("p") == 2 and catalog.cursor("p") == "after-skipped"
    for content in (b"a", b"b"):
        assert catalog.blobs.path(hashlib.sha256(content).hexdigest()).read_bytes() == content
    assert len(batch) == 0 and batch.commit() == []


def test_duplicates_are_found_within_one_batch_and_across_batches(catalog: Catalog) -> None:
    batch = catalog.batch("mail")
    batch.add(_invoice("first.pdf", b"%PDF first", "R-1"), NOW)
    # The same invoice again in the same batch (another scan of it).
    batch.add(_invoice("again.pdf", b"%PDF scan", "R-1"), NOW + timedelta(seconds=1))
    first, again = batch.commit()
    assert isinstance(first, ImportOutcome) and first.duplicate_of is None
    assert isinstance(again, ImportOutcome) and again.duplicate_of == "mail/first.pdf"
    assert "same seller, number" in str(again.duplicate_reason)
    # The same content from another source, in a later batch.
    later = catalog.batch("portal")
    later.add(_invoice("x.pdf", b"%PDF first", "OTHER-9"), NOW + timedelta(seconds=2))
    (copy,) = later.commit()
    assert isinstance(copy, ImportOutcome) and copy.duplicate_of == "mail/first.pdf"
    assert "same content (SHA-256)" in str(copy.duplicate_reason)
    document = catalog.get("mail/again.pdf")
    assert document is not None and document.duplicate_of == "mail/first.pdf"


def test_a_document_the_database_refuses_fails_alone_in_its_batch(
    catalog: Catalog, engine: sa.Engine
) -> None:
    def refuse(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        # What a driver does with a value it cannot store (psycopg: a NUL).
        if statement.startswith("INSERT INTO documents") and "p/bad" in repr(params):
            raise ValueError("refused by the driver")

    batch = catalog.batch("p")
    batch.add(SourceDocument("good-1", "g1.pdf", b"g1", cursor="1"), NOW)
    batch.add(SourceDocument("bad", "bad.pdf", b"bad", cursor="2"), NOW)
    batch.add(SourceDocument("good-2", "g2.pdf", b"g2", cursor="3"), NOW)
    sa.event.listen(engine, "before_cursor_execute", refuse)
    try:
        outcomes = batch.commit()
    finally:
        sa.event.remove(engine, "before_cursor_execute", refuse)
    assert isinstance(outcomes[0], ImportOutcome) and isinstance(outcomes[2], ImportOutcome)
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "refused by the driver"
    assert catalog.get("p/bad") is None
    assert catalog.count("p") == 2 and catalog.cursor("p") == "3"


def test_a_batch_makes_blobs_and_their_new_folders_durable_before_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    batch = store.batch()
    sha, _ = batch.put(b"%PDF durable")
    assert batch.settle() == {}
    blob = store.path(sha)
    assert blob.read_bytes() == b"%PDF durable"
    root = str(store.root)
    # The temporary was fsynced before its rename (so a blob is never
    # incomplete), then the folder holding the new name, and the parent of
    # each folder the rename needed (both fan-out levels were new).
    assert synced[0].startswith(f"{root}/tmp/blob-")
    assert sorted(synced[1:]) == sorted([str(blob.parent), str(blob.parent.parent), root])
    # Content already stored: no write, but its folder is fsynced again (a
    # crashed run may have renamed it without that).
    synced.clear()
    again = store.batch()
    assert again.put(b"%PDF durable") == (sha, 12)
    assert again.settle() == {} and synced == [str(blob.parent)]
