"""The folder source's stat cache (issue 13): an unchanged file is not opened, a changed one is.

"Not opened" is observed with a spy on the one function the walk opens files
through (``open_file_at``, relative to the folder's handle): the tests run as
root in CI, where an unreadable mode would not stop an open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from invoicesync.connectors_builtin.folder import FolderSource, FolderSourceOptions
from invoicesync.connectors_builtin.folder import source as folder_source
from invoicesync.daemon.config.loader import load_config
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.importer import run_import
from invoicesync.daemon.engine.runtime import Runtime, open_runtime
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import ConnectorContext, SkippedDocument, SourceDocument

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class Spy:
    """Counts the files the walk opens, by name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        real = folder_source.open_file_at

        def counting(dir_fd: int, name: str) -> tuple[int, os.stat_result]:
            self.opened.append(name)
            return real(dir_fd, name)

        monkeypatch.setattr(folder_source, "open_file_at", counting)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    return Spy(monkeypatch)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def fetch(root: Path, known: dict[str, str]) -> dict[str, SourceDocument | SkippedDocument]:
    """One fetch with ``known`` as the catalog's fingerprints; contents read as bytes."""
    context = ConnectorContext("inbox", root.parent / "state", known_fingerprint=known.get)
    source = FolderSource("inbox", FolderSourceOptions(path=root), context)
    items: dict[str, SourceDocument | SkippedDocument] = {}
    for item in source.fetch(None):
        if isinstance(item, SourceDocument) and not isinstance(item.content, bytes):
            assert not isinstance(item.content, Path)
            item.content.seek(0)
            item = SourceDocument(
                item.external_id,
                item.filename,
                item.content.read(),
                metadata=item.metadata,
                fingerprint=item.fingerprint,
            )
        items[item.external_id] = item
    return items


def record(items: dict[str, SourceDocument | SkippedDocument]) -> dict[str, str]:
    """What the catalog records after importing ``items``."""
    return {
        k: v.fingerprint
        for k, v in items.items()
        if isinstance(v, SourceDocument) and v.fingerprint is not None
    }


def test_an_unchanged_file_and_its_sidecar_are_not_opened(root: Path, spy: Spy) -> None:
    (root / "a.pdf").write_bytes(b"%PDF a")
    (root / "a.json").write_text('{"number": "A-1"}')
    (root / "sub").mkdir()
    (root / "sub" / "b.pdf").write_bytes(b"%PDF b")
    first = fetch(root, {})
    assert sorted(spy.opened) == ["a.json", "a.pdf", "b.pdf"]
    assert first["a.pdf"].metadata.number == "A-1"  # type: ignore[union-attr]
    spy.opened.clear()

    again = fetch(root, record(first))
    assert spy.opened == []
    assert record(again) == record(first)  # the engine sees the fingerprints it holds


def test_same_size_new_mtime_is_read_again(root: Path, spy: Spy) -> None:
    pdf = root / "a.pdf"
    pdf.write_bytes(b"%PDF 1")
    known = record(fetch(root, {}))
    spy.opened.clear()
    pdf.write_bytes(b"%PDF 2")  # same size
    os.utime(pdf, ns=(1_000_000_000, 1_000_000_000))
    again = fetch(root, known)
    assert spy.opened == ["a.pdf"]
    assert again["a.pdf"].content == b"%PDF 2"  # type: ignore[union-attr]


def test_a_rewrite_with_the_old_mtime_restored_is_read_again(root: Path, spy: Spy) -> None:
    """Size and mtime equal, content different: the change time gives it away."""
    pdf = root / "a.pdf"
    pdf.write_bytes(b"%PDF 1")
    st = pdf.stat()
    known = record(fetch(root, {}))
    spy.opened.clear()
    pdf.write_bytes(b"%PDF 2")
    os.utime(pdf, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (pdf.stat().st_size, pdf.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = fetch(root, known)
    assert spy.opened == ["a.pdf"]
    assert again["a.pdf"].content == b"%PDF 2"  # type: ignore[union-attr]


def test_an_atomic_replace_with_equal_size_and_mtime_is_read_again(root: Path, spy: Spy) -> None:
    pdf = root / "a.pdf"
    pdf.write_bytes(b"%PDF 1")
    st = pdf.stat()
    known = record(fetch(root, {}))
    spy.opened.clear()
    tmp = root / ".a.pdf.tmp"
    tmp.write_bytes(b"%PDF 2")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, pdf)
    assert pdf.stat().st_ino != st.st_ino
    again = fetch(root, known)
    assert spy.opened == ["a.pdf"]
    assert again["a.pdf"].content == b"%PDF 2"  # type: ignore[union-attr]


def test_a_changed_sidecar_reads_the_document_again(root: Path, spy: Spy) -> None:
    (root / "a.pdf").write_bytes(b"%PDF a")
    sidecar = root / "a.pdf.json"
    sidecar.write_text('{"number": "1"}')
    known = record(fetch(root, {}))
    spy.opened.clear()
    sidecar.write_text('{"number": "2"}')  # same size
    again = fetch(root, known)
    assert sorted(spy.opened) == ["a.pdf", "a.pdf.json"]
    assert again["a.pdf"].metadata.number == "2"  # type: ignore[union-attr]


def test_a_file_swapped_for_a_link_is_judged_by_the_full_walk(root: Path, spy: Spy) -> None:
    outside = root.parent / "secret.pdf"
    outside.write_bytes(b"secret")
    (root / "a.pdf").write_bytes(b"%PDF a")
    known = record(fetch(root, {}))
    (root / "a.pdf").unlink()
    (root / "a.pdf").symlink_to(outside)
    again = fetch(root, known)
    assert isinstance(again["a.pdf"], SkippedDocument)
    assert "outside" in again["a.pdf"].reason


def test_the_walk_yields_external_ids_in_code_point_order(root: Path) -> None:
    for name in ("a-b.pdf", "a/x.pdf", "a0.pdf", "B.pdf", "a/y/z.pdf", "a.pdf"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    order = list(fetch(root, {}))
    assert order == sorted(order)
    assert order == ["B.pdf", "a-b.pdf", "a.pdf", "a/x.pdf", "a/y/z.pdf", "a0.pdf"]


# -- through the importer and the catalog ------------------------------------


@pytest.fixture
def runtime(tmp_path: Path, root: Path) -> Iterator[Runtime]:
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        "version: 1\ntimezone: Europe/Berlin\nstate: ./state\n"
        "companies: [{id: acme}]\n"
        f"sources: [{{id: inbox, type: folder, options: {{path: {root}, company: acme}}}}]\n"
    )
    registry = load_plugins(entry_points=False)
    rt = open_runtime(load_config(config, registry), registry, Clock(NOW))
    yield rt
    rt.close()


def test_a_no_op_import_opens_nothing_and_a_sidecar_edit_is_a_metadata_change(
    runtime: Runtime, root: Path, spy: Spy
) -> None:
    for i in range(30):
        (root / f"d{i % 3}").mkdir(exist_ok=True)
        (root / f"d{i % 3}" / f"{i:02d}.pdf").write_bytes(b"%PDF " + bytes([i]))
    sidecar = root / "d0" / "00.pdf.json"
    sidecar.write_text('{"number": "N-1"}')
    source_cfg = runtime.config.sources[0]
    first = run_import(runtime, source_cfg)
    assert first.counts["new"] == 30 and first.error is None
    spy.opened.clear()

    again = run_import(runtime, source_cfg)
    assert again.counts["unchanged"] == 30 and not again.changed
    assert spy.opened == []

    sidecar.write_text('{"number": "N-2"}')
    third = run_import(runtime, source_cfg)
    assert third.counts["metadata"] == 1 and third.counts["unchanged"] == 29
    assert sorted(spy.opened) == ["00.pdf", "00.pdf.json"]
    document = runtime.catalog.get("inbox/d0/00.pdf")
    assert document is not None and document.number == "N-2" and document.revision == 1
