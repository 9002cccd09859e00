"""Every built-in connector passes the connector conformance suite."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
from invoicesync.connectors_builtin.demo.source import DemoOptions, DemoSource
from invoicesync.connectors_builtin.folder.source import FolderSource, FolderSourceOptions
from invoicesync.connectors_builtin.folder.target import FolderTarget, FolderTargetOptions
from invoicesync.plugins.manager import load_plugins
from invoicesync.plugins.testing import (
    SAMPLE_PDF,
    SourceConformance,
    TargetConformance,
    make_context,
)


def test_this_module_covers_every_builtin_connector() -> None:
    registry = load_plugins(entry_points=False)
    builtin = {p.name for p in registry.plugins if p.builtin}
    sources = {t for p in registry.plugins if p.name in builtin for t in p.sources}
    targets = {t for p in registry.plugins if p.name in builtin for t in p.targets}
    # Connectors that need a server run the suite against their fixtures:
    # imap and http_portal in tests/test_imap_conformance.py and
    # tests/test_http_portal_conformance.py, the network targets in
    # tests/connectors/ (test_network_targets_conformance.py, sftp, email).
    assert sources == {"demo", "folder", "imap", "http_portal"}, (
        "add the new built-in source to this module"
    )
    network = {"webdav", "s3", "rclone", "sftp", "email"}
    assert targets - network == {"folder"}, "add the new built-in target to this module"


def _all_files(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    )


class TestFolderTargetConformance(TargetConformance):
    @pytest.fixture
    def local_root(self, tmp_path: Path) -> Path:
        root = tmp_path / "export"
        root.mkdir()
        return root

    @pytest.fixture
    def target(self, local_root: Path, tmp_path: Path) -> FolderTarget:
        return FolderTarget(
            "archive", FolderTargetOptions(path=local_root), make_context(tmp_path / "state")
        )

    @pytest.fixture
    def read_remote(self, local_root: Path) -> Callable[[str], bytes | None]:
        def read(name: str) -> bytes | None:
            path = local_root / name
            return path.read_bytes() if path.is_file() else None

        return read

    @pytest.fixture
    def list_remote(self, local_root: Path) -> Callable[[], list[str]]:
        return lambda: _all_files(local_root)

    @pytest.fixture
    def broken_target(self, tmp_path: Path) -> FolderTarget:
        # The export folder's place is taken by a file: nothing can be written.
        blocker = tmp_path / "not-a-folder"
        blocker.write_bytes(b"")
        return FolderTarget(
            "archive", FolderTargetOptions(path=blocker), make_context(tmp_path / "state")
        )


class TestFolderTargetWithSidecarsConformance(TestFolderTargetConformance):
    """With sidecars on, list_remote shows the documents only (sidecars are extra files)."""

    @pytest.fixture
    def target(self, local_root: Path, tmp_path: Path) -> FolderTarget:
        return FolderTarget(
            "archive",
            FolderTargetOptions(path=local_root, sidecar=True),
            make_context(tmp_path / "state"),
        )

    @pytest.fixture
    def list_remote(self, local_root: Path) -> Callable[[], list[str]]:
        def listing() -> list[str]:
            files = _all_files(local_root)
            # A sidecar belongs to a document beside it; anything else is a stray file.
            return [f for f in files if not (f.endswith(".json") and f[:-5] in files)]

        return listing


class TestFolderSourceConformance(SourceConformance):
    @pytest.fixture
    def inbox(self, tmp_path: Path) -> Path:
        inbox = tmp_path / "inbox"
        (inbox / "2024").mkdir(parents=True)
        for i in range(3):
            (inbox / "2024" / f"invoice-{i}.pdf").write_bytes(SAMPLE_PDF + b"%d" % i)
        (inbox / "receipt.pdf").write_bytes(SAMPLE_PDF + b"receipt")
        (inbox / "receipt.json").write_text('{"type": "receipt", "gross_amount": "12.50"}')
        return inbox

    @pytest.fixture
    def source(self, inbox: Path, tmp_path: Path) -> FolderSource:
        return FolderSource(
            "inbox", FolderSourceOptions(path=inbox, company="acme"), make_context(tmp_path / "s")
        )

    @pytest.fixture
    def broken_source(self, tmp_path: Path) -> FolderSource:
        return FolderSource(
            "inbox", FolderSourceOptions(path=tmp_path / "unmounted"), make_context(tmp_path / "s")
        )

    @pytest.fixture
    def add_document(self, inbox: Path) -> Callable[[], None]:
        return lambda: (inbox / "late.pdf").write_bytes(SAMPLE_PDF + b"late")


class TestDemoSourceConformance(SourceConformance):
    unsupported: ClassVar[dict[str, str]] = {
        "test_broken_source_check_raises": (
            "the demo portal is generated locally: it has no connection or credentials to break"
        ),
        "test_broken_source_fetch_raises_connector_error": (
            "the demo portal is generated locally: it has no connection or credentials to break"
        ),
    }

    @pytest.fixture
    def source(self, tmp_path: Path) -> DemoSource:
        return DemoSource("demo", DemoOptions(count=5), make_context(tmp_path / "s"))

    @pytest.fixture
    def add_document(self, source: DemoSource) -> Callable[[], None]:
        # The portal publishes one more invoice.
        def add() -> None:
            source.options.count += 1

        return add
