"""The shipped connectors pass the same conformance suite as third-party ones."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from invoicesync.connectors_builtin.demo import DemoOptions, DemoSource
from invoicesync.connectors_builtin.folder import (
    FolderSource,
    FolderSourceOptions,
    FolderTarget,
    FolderTargetOptions,
)
from invoicesync.plugins import Source, Target
from invoicesync.plugins.testing import SourceConformance, TargetConformance, make_context

_NOTHING_TO_BREAK = (
    "the demo portal has no server, credentials or path that could be wrong; its only "
    "failure, a damaged cursor, is tested in test_demo.py"
)


class TestDemoSourceConformance(SourceConformance):
    unsupported = {  # noqa: RUF012 (the suite reads a plain mapping)
        "test_broken_source_check_raises": _NOTHING_TO_BREAK,
        "test_broken_source_fetch_raises_connector_error": _NOTHING_TO_BREAK,
    }

    @pytest.fixture
    def source(self, tmp_path: Path) -> DemoSource:
        return DemoSource("demo", DemoOptions(count=5), make_context(tmp_path / "state"))

    @pytest.fixture
    def add_document(self, source: DemoSource) -> Callable[[], None]:
        # The portal "publishes" one more document: what raising count does.
        def add() -> None:
            source.options = DemoOptions(count=source.options.count + 1, seed=source.options.seed)

        return add

    @pytest.fixture
    def broken_source(self) -> Source[Any]:
        pytest.fail("not used: see unsupported")


def _write_pdf(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.4\n% " + text.encode() + b"\n%%EOF\n")


class TestFolderSourceConformance(SourceConformance):
    @pytest.fixture
    def inbox(self, tmp_path: Path) -> Path:
        root = tmp_path / "inbox"
        _write_pdf(root / "a.pdf", "a")
        _write_pdf(root / "2025" / "b.pdf", "b")
        (root / "2025" / "b.json").write_text('{"number": "RE-2", "company": "acme"}')
        _write_pdf(root / "2025" / "03" / "c.pdf", "c")
        _write_pdf(root / "bad.pdf", "bad sidecar")
        (root / "bad.json").write_text('{"number": "x", "number": "y"}')  # a SkippedDocument
        return root

    @pytest.fixture
    def source(self, inbox: Path, tmp_path: Path) -> FolderSource:
        options = FolderSourceOptions(path=inbox, company="acme")
        return FolderSource("inbox", options, make_context(tmp_path / "state"))

    @pytest.fixture
    def add_document(self, inbox: Path) -> Callable[[], None]:
        return lambda: _write_pdf(inbox / "2026" / "new.pdf", "new")

    @pytest.fixture
    def broken_source(self, tmp_path: Path) -> FolderSource:
        options = FolderSourceOptions(path=tmp_path / "no-such-folder")
        return FolderSource("inbox", options, make_context(tmp_path / "state"))


def _listing(root: Path) -> list[str]:
    """Every file below root, hidden ones (temporary files) included."""
    names = []
    for folder, _, files in os.walk(root):
        names += [Path(os.path.relpath(os.path.join(folder, f), root)).as_posix() for f in files]
    return sorted(names)


class TestFolderTargetConformance(TargetConformance):
    @pytest.fixture
    def local_root(self, tmp_path: Path) -> Path:
        root = tmp_path / "export"
        root.mkdir()
        return root

    @pytest.fixture
    def target(self, local_root: Path, tmp_path: Path) -> Target[Any]:
        target = FolderTarget(
            "archive", FolderTargetOptions(path=local_root), make_context(tmp_path / "state")
        )
        target.check()
        return target

    @pytest.fixture
    def read_remote(self, local_root: Path) -> Callable[[str], bytes | None]:
        def read(name: str) -> bytes | None:
            path = local_root / name
            return path.read_bytes() if path.is_file() else None

        return read

    @pytest.fixture
    def list_remote(self, local_root: Path) -> Callable[[], list[str]]:
        return lambda: _listing(local_root)

    @pytest.fixture
    def broken_target(self, tmp_path: Path) -> Target[Any]:
        blocker = tmp_path / "a-file"
        blocker.write_bytes(b"not a folder")
        return FolderTarget(
            "archive", FolderTargetOptions(path=blocker / "export"), make_context(tmp_path / "s")
        )


class TestFolderTargetWithSidecarsConformance(TestFolderTargetConformance):
    """With ``sidecar: true`` the suite sees the .json files too, so the
    listing leaves them out: they belong to the file they describe."""

    @pytest.fixture
    def target(self, local_root: Path, tmp_path: Path) -> Target[Any]:
        options = FolderTargetOptions(path=local_root, sidecar=True, fsync=False)
        target = FolderTarget("archive", options, make_context(tmp_path / "state"))
        target.check()
        return target

    @pytest.fixture
    def list_remote(self, local_root: Path) -> Callable[[], list[str]]:
        def listing() -> list[str]:
            names = _listing(local_root)
            present = set(names)
            return [n for n in names if not (n.endswith(".json") and n[:-5] in present)]

        return listing
