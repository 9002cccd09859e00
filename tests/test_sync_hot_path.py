"""The sync hot path's shortcuts keep the slow path's behaviour.

``Ledger.reserve_free`` (name check and intent in one transaction),
``Ledger.mark_exported`` (a statement compiled once), the blob store's
rename-first and the folder target's cached root each replace a longer
sequence; these tests pin what the longer sequence did.
"""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from invoicesync.connectors_builtin.folder.target import FolderTarget, FolderTargetOptions
from invoicesync.daemon.storage.blobs import BlobStore
from invoicesync.daemon.storage.catalog import Catalog
from invoicesync.daemon.storage.database import open_database
from invoicesync.daemon.storage.ledger import Ledger, LedgerState, NameTaken
from invoicesync.plugins import ConnectorContext, Document, ExportItem, SourceDocument

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    engine: sa.Engine = open_database(tmp_path / "state")
    catalog = Catalog(engine, BlobStore(tmp_path / "state" / "blobs"))
    for name in ("a", "b", "c"):
        catalog.store("p", SourceDocument(name, f"{name}.pdf", name.encode()), NOW)
    return Ledger(engine)


def test_reserve_free_takes_the_first_name_nobody_else_holds(ledger: Ledger) -> None:
    ledger.reserve("acc", "p/a", 1, "sha-a", "x.pdf", NOW)
    ledger.reserve("acc", "p/b", 1, "sha-b", "x_1.pdf", NOW)
    name = ledger.reserve_free("acc", "p/c", 1, "sha-c", ["x.pdf", "x_1.pdf", "x_2.pdf"], NOW)
    assert name == "x_2.pdf"
    entry = ledger.entry("acc", "p/c")
    assert entry is not None
    assert (entry.state, entry.remote_name, entry.sha256) == (
        LedgerState.EXPORTING,
        "x_2.pdf",
        "sha-c",
    )


def test_reserve_free_keeps_a_name_the_document_holds_itself(ledger: Ledger) -> None:
    ledger.reserve("acc", "p/a", 1, "sha-a", "x.pdf", NOW)
    ledger.mark_exported("acc", "p/a", "sha-a", "x.pdf", NOW)
    later = NOW + timedelta(days=1)
    assert ledger.reserve_free("acc", "p/a", 2, "sha-a2", ["x.pdf", "y.pdf"], later) == "x.pdf"
    entry = ledger.entry("acc", "p/a")
    assert entry is not None
    assert (entry.state, entry.revision, entry.updated_at) == (LedgerState.EXPORTING, 2, later)
    assert entry.first_exported_at == NOW  # untouched by the new intent


def test_reserve_free_returns_none_when_every_name_is_held(ledger: Ledger) -> None:
    ledger.reserve("acc", "p/a", 1, "sha-a", "x.pdf", NOW)
    assert ledger.reserve_free("acc", "p/b", 1, "sha-b", ["x.pdf"], NOW) is None
    assert ledger.entry("acc", "p/b") is None  # nothing recorded
    # Names are per account.
    assert ledger.reserve_free("other", "p/b", 1, "sha-b", ["x.pdf"], NOW) == "x.pdf"


def test_mark_exported_keeps_the_first_export_time(ledger: Ledger) -> None:
    ledger.reserve("acc", "p/a", 1, "sha-a", "x.pdf", NOW)
    ledger.mark_failed("acc", "p/a", "boom", 2, NOW, NOW)
    ledger.mark_exported("acc", "p/a", "sha-a", "ref-1", NOW)
    later = NOW + timedelta(hours=3)
    ledger.reserve("acc", "p/a", 2, "sha-a2", "x.pdf", later)
    ledger.mark_exported("acc", "p/a", "sha-a2", "ref-2", later)
    entry = ledger.entry("acc", "p/a")
    assert entry is not None
    assert entry.state is LedgerState.EXPORTED
    assert (entry.remote_ref, entry.exported_sha256) == ("ref-2", "sha-a2")
    assert (entry.attempts, entry.last_error, entry.next_attempt_at) == (0, None, None)
    assert (entry.first_exported_at, entry.exported_at, entry.updated_at) == (NOW, later, later)


def test_blob_store_creates_fan_out_folders_only_when_missing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    source = tmp_path / "in.pdf"
    source.write_bytes(b"first")
    sha, size = blobs.put(source)
    assert (blobs.path(sha).read_bytes(), size) == (b"first", 5)
    # Its folder gone (a restored backup without empty folders): recreated.
    shutil.rmtree(blobs.path(sha).parent.parent)
    assert blobs.put(b"first") == (sha, 5)
    assert blobs.put(source) == (sha, 5)
    assert blobs.path(sha).read_bytes() == b"first"
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def _item(tmp_path: Path, name: str) -> ExportItem:
    content = tmp_path / f"content-{name.replace('/', '_')}"
    content.write_bytes(name.encode())
    doc = Document(
        id=f"p/{name}",
        source="p",
        external_id=name,
        import_date=NOW,
        filename=name,
        media_type="application/pdf",
        size=len(name),
        sha256="0" * 64,
    )
    return ExportItem(doc, name, content)


def test_folder_target_recreates_a_root_removed_between_exports(tmp_path: Path) -> None:
    root = tmp_path / "export"
    context = ConnectorContext(id="out", state_dir=tmp_path / "st", stop=threading.Event())
    target = FolderTarget("out", FolderTargetOptions(path=root), context)
    target.export(_item(tmp_path, "a/1.pdf"))
    shutil.rmtree(root)
    target.export(_item(tmp_path, "a/2.pdf"))
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.pdf")) == ["a/2.pdf"]
    assert (root / "a" / "2.pdf").read_bytes() == b"a/2.pdf"


def test_a_batch_of_reservations_decides_as_one_by_one_would(ledger: Ledger) -> None:
    ledger.reserve("acc", "p/a", 1, "sha-a", "x.pdf", NOW)
    with ledger.transaction() as tx:
        tx.prefetch_holders("acc", ["x.pdf", "y.pdf"])
        # p/a moves to y.pdf: x.pdf is free again for p/b within the batch.
        assert tx.reserve_free("acc", "p/a", 2, "sha-a2", ["y.pdf"], NOW, holds="x.pdf") == "y.pdf"
        assert tx.reserve_free("acc", "p/b", 1, "sha-b", ["x.pdf"], NOW, new=True) == "x.pdf"
        # p/c (new) finds x.pdf held by p/b, whose row is not even written yet.
        got = tx.reserve_free("acc", "p/c", 1, "sha-c", ["x.pdf", "x_2.pdf"], NOW, new=True)
        assert got == "x_2.pdf"
    names = {e.document_id: (e.remote_name, e.state) for e in ledger.entries("acc")}
    assert names == {
        "p/a": ("y.pdf", LedgerState.EXPORTING),
        "p/b": ("x.pdf", LedgerState.EXPORTING),
        "p/c": ("x_2.pdf", LedgerState.EXPORTING),
    }


def test_a_clash_in_a_batch_undoes_the_whole_batch(ledger: Ledger) -> None:
    ledger.reserve("acc", "p/a", 1, "sha-a", "x.pdf", NOW)
    with pytest.raises(NameTaken), ledger.transaction() as tx:
        tx.reserve("acc", "p/b", 1, "sha-b", "y.pdf", NOW, new=True)
        tx.reserve("acc", "p/c", 1, "sha-c", "x.pdf", NOW, new=True)  # told wrong: it is held
    assert [e.document_id for e in ledger.entries("acc")] == ["p/a"]
