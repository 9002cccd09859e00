"""The ``folder`` target: atomic writes, hostile names, sidecars, temp-file cleanup."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest
from invoicesync.connectors_builtin.folder import (
    FolderSource,
    FolderSourceOptions,
    FolderTarget,
    FolderTargetOptions,
    cleanup_temp_files,
)
from invoicesync.connectors_builtin.folder import target as folder_target
from invoicesync.connectors_builtin.folder.target import TEMP_MARKER
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import (
    ConnectorContext,
    ConnectorError,
    Document,
    ExportItem,
    PermanentError,
    SourceDocument,
    TransientError,
)
from pydantic import ValidationError


def make_target(root: Path, **options: object) -> FolderTarget:
    opts = FolderTargetOptions.model_validate({"path": str(root), **options})
    return FolderTarget("archive", opts, ConnectorContext("archive", root.parent / "state"))


def make_document(**fields: object) -> Document:
    values: dict[str, object] = {
        "id": "demo/inv-000001",
        "source": "demo",
        "external_id": "inv-000001",
        "import_date": datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
        "filename": "RE-2025-000001.pdf",
        "media_type": "application/pdf",
        "size": 5,
        "sha256": "ab" * 32,
        "company": "acme",
        "number": "RE-2025-000001",
        "tags": {"travel", "Office", "b"},
        "gross_amount": "119.00",
        "net_amount": "100.00",
        "currency": "EUR",
        "fields": {"cost_center": "4711"},
        "note": "Ünïcode note",
    }
    values.update(fields)
    return Document.model_validate(values)


def item_for(tmp_path: Path, name: str, content: bytes = b"hello") -> ExportItem:
    blob = tmp_path / "blobs" / f"{abs(hash((name, content)))}"
    blob.parent.mkdir(exist_ok=True)
    blob.write_bytes(content)
    return ExportItem(make_document(size=len(content)), name, blob)


def all_files(root: Path) -> list[str]:
    """Every file and link below root (hidden ones included), as relative paths."""
    out = []
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            out.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(out)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "export"


def test_registered_as_builtin_plugin() -> None:
    assert load_plugins(entry_points=False).targets["folder"] is FolderTarget


def test_export_writes_the_file_and_creates_folders(root: Path, tmp_path: Path) -> None:
    target = make_target(root)
    result = target.export(item_for(tmp_path, "acme/2025/RE 1.pdf", b"%PDF-1.4 one"))
    assert result.remote_ref == "acme/2025/RE 1.pdf"
    assert (root / "acme" / "2025" / "RE 1.pdf").read_bytes() == b"%PDF-1.4 one"
    assert all_files(root) == ["acme/2025/RE 1.pdf"]  # no temp files, no sidecar


def test_export_is_idempotent_and_replaces_atomically(root: Path, tmp_path: Path) -> None:
    target = make_target(root)
    target.export(item_for(tmp_path, "a/x.pdf", b"first"))
    target.export(item_for(tmp_path, "a/x.pdf", b"first"))
    assert all_files(root) == ["a/x.pdf"]
    before = os.stat(root / "a" / "x.pdf").st_ino
    target.export(item_for(tmp_path, "a/x.pdf", b"second revision"))
    assert (root / "a" / "x.pdf").read_bytes() == b"second revision"
    # A new inode: the file was replaced by rename, not rewritten in place.
    assert os.stat(root / "a" / "x.pdf").st_ino != before
    assert all_files(root) == ["a/x.pdf"]


def test_large_content_is_copied_completely(root: Path, tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, odd tail
    make_target(root, fsync=False).export(item_for(tmp_path, "big.bin", content))
    assert (root / "big.bin").read_bytes() == content


@pytest.mark.parametrize(
    "name",
    [
        "../escape.pdf",
        "a/../../escape.pdf",
        "/tmp/abs.pdf",
        "a//b.pdf",
        "a/./b.pdf",
        "a/",
        "",
        "..",
        ".",
        "nul\x00.pdf",
        "new\nline.pdf",
        "esc\x1b.pdf",
        "back\\slash.pdf",
        ".hidden.pdf",
        "a/.x/b.pdf",
        "x" * 256 + ".pdf",
        "\udcff.pdf",
        f".x.pdf{TEMP_MARKER}abc",
    ],
)
def test_hostile_names_are_refused(root: Path, tmp_path: Path, name: str) -> None:
    target = make_target(root)
    target.check()
    before = all_files(tmp_path)
    with pytest.raises(PermanentError, match="refus"):
        target.export(item_for(tmp_path, name))
    assert all_files(root) == []
    assert [f for f in all_files(tmp_path) if not f.startswith("blobs/")] == [
        f for f in before if not f.startswith("blobs/")
    ]


def test_symlink_inside_the_root_leading_outside_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "evil").symlink_to(outside)
    with pytest.raises(PermanentError, match="leads outside"):
        make_target(root).export(item_for(tmp_path, "evil/passwd"))
    assert list(outside.iterdir()) == []


def test_symlink_inside_the_root_leading_inside_is_followed(root: Path, tmp_path: Path) -> None:
    (root / "real").mkdir(parents=True)
    (root / "alias").symlink_to(root / "real")
    make_target(root).export(item_for(tmp_path, "alias/x.pdf", b"via link"))
    assert (root / "real" / "x.pdf").read_bytes() == b"via link"


def test_symlinked_root_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real-export"
    real.mkdir()
    (tmp_path / "export").symlink_to(real)
    make_target(tmp_path / "export").export(item_for(tmp_path, "x/y.pdf"))
    assert (real / "x" / "y.pdf").read_bytes() == b"hello"


def test_existing_file_at_final_name_is_replaced_even_if_a_symlink(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "victim.txt"
    outside.write_bytes(b"untouched")
    root.mkdir()
    (root / "x.pdf").symlink_to(outside)
    make_target(root).export(item_for(tmp_path, "x.pdf", b"new"))
    assert outside.read_bytes() == b"untouched"  # the link was replaced, not followed
    assert not (root / "x.pdf").is_symlink()
    assert (root / "x.pdf").read_bytes() == b"new"


def test_a_file_where_a_folder_should_be_is_permanent(root: Path, tmp_path: Path) -> None:
    target = make_target(root)
    target.export(item_for(tmp_path, "acme"))
    with pytest.raises(PermanentError, match="acme"):
        target.export(item_for(tmp_path, "acme/x.pdf"))
    (root / "dir.pdf").mkdir()
    with pytest.raises(PermanentError):
        target.export(item_for(tmp_path, "dir.pdf"))
    assert all_files(root) == ["acme"]


class BreakingStream(io.RawIOBase):
    """Gives some bytes, then fails like a dropped network connection."""

    def __init__(self, good: bytes) -> None:
        self._good = good
        self._sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._sent:
            self._sent = True
            buffer[: len(self._good)] = self._good
            return len(self._good)
        raise ConnectionResetError("connection reset by peer")


class BreakingItem(ExportItem):
    def open(self) -> IO[bytes]:
        return io.BufferedReader(BreakingStream(b"partial content " * 100), buffer_size=64)


def test_broken_stream_leaves_the_old_file_and_no_temp(root: Path, tmp_path: Path) -> None:
    target = make_target(root)
    target.export(item_for(tmp_path, "x.pdf", b"complete old version"))
    good = item_for(tmp_path, "x.pdf")
    broken = BreakingItem(good.document, "x.pdf", good.content_path)
    with pytest.raises(TransientError, match="reading the document content failed"):
        target.export(broken)
    assert (root / "x.pdf").read_bytes() == b"complete old version"
    assert all_files(root) == ["x.pdf"]
    new = BreakingItem(good.document, "new/y.pdf", good.content_path)
    with pytest.raises(TransientError):
        target.export(new)
    assert all_files(root) == ["x.pdf"]  # nothing of y.pdf is visible


def test_missing_content_is_transient(root: Path, tmp_path: Path) -> None:
    item = ExportItem(make_document(), "x.pdf", tmp_path / "no-such-blob")
    with pytest.raises(TransientError, match="cannot open"):
        make_target(root).export(item)
    assert all_files(root) == []


def test_shutdown_abandons_the_write_cleanly(root: Path, tmp_path: Path) -> None:
    target = make_target(root)
    target.context.stop.set()
    with pytest.raises(TransientError, match="shutting down"):
        target.export(item_for(tmp_path, "x.pdf"))
    assert all_files(root) == []


def test_sidecar_holds_the_document_metadata(root: Path, tmp_path: Path) -> None:
    target = make_target(root, sidecar=True)
    item = item_for(tmp_path, "acme/RE-1.pdf")
    assert target.export(item).remote_ref == "acme/RE-1.pdf"
    assert all_files(root) == ["acme/RE-1.pdf", "acme/RE-1.pdf.json"]
    data = json.loads((root / "acme" / "RE-1.pdf.json").read_text(encoding="utf-8"))
    expected = item.document.model_dump(mode="json")
    expected["tags"] = sorted(expected["tags"])
    assert data == expected
    assert data["gross_amount"] == "119.00"  # Decimal as a string, never a float
    assert data["tags"] == ["Office", "b", "travel"]
    assert data["note"] == "Ünïcode note"


def test_exported_folder_imports_again_with_the_same_metadata(root: Path, tmp_path: Path) -> None:
    target = make_target(root, sidecar=True)
    item = item_for(tmp_path, "acme/RE-1.pdf", b"%PDF round trip")
    target.export(item)
    options = FolderSourceOptions(path=root)
    source = FolderSource("again", options, ConnectorContext("again", tmp_path))
    [doc] = list(source.fetch(None))
    assert isinstance(doc, SourceDocument)
    assert doc.external_id == "acme/RE-1.pdf"
    assert doc.metadata == item.document.metadata


def test_sidecar_mode_keeps_names_short_enough(root: Path, tmp_path: Path) -> None:
    target = make_target(root, sidecar=True)
    long = "ä" * 200 + ".pdf"  # 404 bytes
    short = target.sanitize_component(long)
    assert short.endswith(".pdf") and len(short.encode()) <= 250
    assert make_target(root).sanitize_component(long) == long  # without sidecar: unchanged
    with pytest.raises(PermanentError, match="sidecar"):
        target.export(item_for(tmp_path, "x" * 251))
    target.export(item_for(tmp_path, short))
    assert sorted(all_files(root)) == [short, short + ".json"]


def test_check_changes_nothing_and_export_creates_the_root(root: Path, tmp_path: Path) -> None:
    target = make_target(root / "deep" / "er")
    target.check()  # creatable: fine, but check-config must not create it
    assert not root.exists()
    target.export(item_for(tmp_path, "x.pdf"))
    assert all_files(root) == ["deep/er/x.pdf"]
    target.check()  # now it exists: a probe file is written and removed
    assert all_files(root) == ["deep/er/x.pdf"]


def test_check_fails_clearly_when_the_root_cannot_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConnectorError, match="exists and is not a folder"):
        make_target(tmp_path / "file").check()
    with pytest.raises(ConnectorError, match="cannot create"):
        make_target(tmp_path / "file" / "sub").check()


def test_export_to_a_broken_root_is_transient(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(TransientError):
        make_target(tmp_path / "file").export(item_for(tmp_path, "x.pdf"))


def test_cleanup_removes_only_stale_own_temp_files(root: Path, tmp_path: Path) -> None:
    (root / "a").mkdir(parents=True)
    stale = root / "a" / f".x.pdf{TEMP_MARKER}0123abcd"
    stale.write_bytes(b"half")
    past = time.time() - 3600
    os.utime(stale, (past, past))
    fresh = root / f".y.pdf{TEMP_MARKER}fresh"  # a concurrent writer's file
    fresh.write_bytes(b"in progress")
    os.utime(fresh, (past + 3500, past + 3500))  # newer than the cutoff below
    other = root / ".keep-me"
    other.write_bytes(b"")
    outside = tmp_path / "outside"
    outside.mkdir()
    outside_tmp = outside / f".z{TEMP_MARKER}1"
    outside_tmp.write_bytes(b"")
    os.utime(outside_tmp, (past, past))
    (root / "link").symlink_to(outside)  # not followed
    assert cleanup_temp_files(root, older_than=past + 60) == 1
    assert not stale.exists()
    assert fresh.exists() and other.exists() and outside_tmp.exists()


def test_check_cleans_up_stale_temp_files_from_before_this_process(
    root: Path, tmp_path: Path
) -> None:
    root.mkdir()
    stale = root / f".x.pdf{TEMP_MARKER}dead"
    stale.write_bytes(b"half")
    os.utime(stale, (1, 1))  # long before this process started
    make_target(root).check()
    assert not stale.exists()


def test_a_later_run_removes_a_dead_node_s_temp_files_from_after_this_process_started(
    root: Path, tmp_path: Path
) -> None:
    # With several nodes, the run that takes over a dead node's account is in
    # a process that started before the dead node wrote its temporary file.
    root.mkdir()
    make_target(root).check()  # this process has cleaned the root once already
    leftover = root / f".x.pdf{TEMP_MARKER}deadnode"
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 5, time.time() - 5))  # after process start
    make_target(root).check()  # the next run (a new target instance)
    assert not leftover.exists()


WRITER = textwrap.dedent(
    """
    import io, sys, time
    from pathlib import Path
    from invoicesync.connectors_builtin.folder import FolderTarget, FolderTargetOptions
    from invoicesync.plugins import ConnectorContext, Document, ExportItem

    root, blob = Path(sys.argv[1]), Path(sys.argv[2])

    class Slow(io.RawIOBase):
        sent = False
        def readable(self):
            return True
        def readinto(self, buf):
            if not self.sent:
                self.sent = True
                buf[:4] = b"half"
                return 4
            print("writing", flush=True)
            time.sleep(120)  # killed long before this ends
            return 0

    class SlowItem(ExportItem):
        def open(self):
            return io.BufferedReader(Slow())

    doc = Document(id="s/x", source="s", external_id="x", import_date="2026-01-01T00:00:00Z",
                   filename="x.pdf", media_type="application/pdf", size=4, sha256="0" * 64)
    target = FolderTarget("a", FolderTargetOptions(path=root), ConnectorContext("a", root))
    target.export(SlowItem(doc, "sub/x.pdf", blob))
    """
)


def test_kill_9_mid_write_then_restart_leaves_no_temp_files(root: Path, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"unused")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(blob)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the temp file is being written
        assert line == "writing\n", proc.stderr.read() if proc.stderr else ""
        leftovers = [f for f in all_files(root) if TEMP_MARKER in f]
        assert len(leftovers) == 1 and leftovers[0].startswith("sub/.x.pdf")
    finally:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.wait(timeout=30)
    assert [f for f in all_files(root) if TEMP_MARKER in f]  # still there after the kill
    # "The daemon restarts": a new process checks the target.
    restart = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path;"
            "from invoicesync.connectors_builtin.folder import FolderTarget, FolderTargetOptions;"
            "from invoicesync.plugins import ConnectorContext;"
            "FolderTarget('a', FolderTargetOptions(path=Path(sys.argv[1])),"
            " ConnectorContext('a', Path(sys.argv[1]))).check()",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert restart.returncode == 0, restart.stderr
    assert all_files(root) == []
    assert not (root / "sub" / "x.pdf").exists()


@pytest.mark.parametrize(
    "options", [{}, {"path": "x", "sidecar": "maybe"}, {"path": "x", "mode": "0644"}]
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FolderTargetOptions.model_validate(options)


def test_defaults_and_relative_path(tmp_path: Path) -> None:
    opts = FolderTargetOptions.model_validate(
        {"path": "export"}, context={"base_dir": str(tmp_path)}
    )
    assert opts.path == tmp_path / "export"
    assert opts.sidecar is False and opts.fsync is True


class _Fsyncs:
    """Counts fsync calls by kind of file (a spy: the real fsync still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files = 0
        self.folders = 0
        real = os.fsync

        def fsync(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                self.folders += 1
            else:
                self.files += 1
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_new_file_waits_for_the_barrier_a_replacement_does_not(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_target(root)
    assert target.defers_durability
    fsyncs = _Fsyncs(monkeypatch)
    target.export(item_for(tmp_path, "a/new.pdf", b"v1"))
    assert (fsyncs.files, fsyncs.folders) == (0, 0)  # left to the barrier
    target.export(item_for(tmp_path, "a/new.pdf", b"v2"))
    # It replaces a good file: fsync'ed before the rename, power cut or not.
    assert (fsyncs.files, fsyncs.folders) == (1, 0)
    assert (root / "a" / "new.pdf").read_bytes() == b"v2"


def test_barrier_without_syncfs_fsyncs_each_file_and_folder_written(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folder_target, "_SYNCFS", [None])  # a system without syncfs
    target = make_target(root, sidecar=True)
    target.export(item_for(tmp_path, "a/b/x.pdf", b"x"))
    target.export(item_for(tmp_path, "a/b/y.pdf", b"y"))
    fsyncs = _Fsyncs(monkeypatch)
    target.barrier()
    # Four files (two documents, two sidecars); the folder a/b, and the
    # folders that gained an entry (root for a, a for b).
    assert (fsyncs.files, fsyncs.folders) == (4, 3)
    target.barrier()  # nothing new: nothing to do
    assert (fsyncs.files, fsyncs.folders) == (4, 3)


def test_barrier_with_syncfs_and_without_fsync_option(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(folder_target, "_SYNCFS", [calls.append])
    target = make_target(root)
    target.export(item_for(tmp_path, "a/x.pdf", b"x"))
    target.export(item_for(tmp_path, "b/y.pdf", b"y"))
    target.barrier()
    assert len(calls) == 1  # one file system: one syncfs
    quick = make_target(tmp_path / "quick", fsync=False)
    quick.export(item_for(tmp_path, "z.pdf", b"z"))
    quick.barrier()
    assert len(calls) == 1  # fsync: false makes nothing durable


def test_the_real_barrier_of_this_system_succeeds(root: Path, tmp_path: Path) -> None:
    target = make_target(root)
    target.export(item_for(tmp_path, "x.pdf", b"x"))
    target.barrier()
    target.close()
    assert (root / "x.pdf").read_bytes() == b"x"
