"""The conformance suite, pointed at reference connectors that are correct."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from invoicesync.plugins.testing import SourceConformance, TargetConformance, make_context
from reference_connectors import (
    FolderOptions,
    MemoryOptions,
    MemorySource,
    ReferenceFolderTarget,
    memory_docs,
)


class TestReferenceFolderTarget(TargetConformance):
    @pytest.fixture
    def local_root(self, tmp_path: Path) -> Path:
        root = tmp_path / "remote"
        root.mkdir()
        return root

    @pytest.fixture
    def target(self, local_root: Path, tmp_path: Path) -> ReferenceFolderTarget:
        return ReferenceFolderTarget(
            "t", FolderOptions(path=local_root), make_context(tmp_path / "state")
        )

    @pytest.fixture
    def read_remote(self, local_root: Path) -> Callable[[str], bytes | None]:
        def read(name: str) -> bytes | None:
            path = local_root / name
            return path.read_bytes() if path.is_file() else None

        return read

    @pytest.fixture
    def list_remote(self, local_root: Path) -> Callable[[], list[str]]:
        def listing() -> list[str]:
            return sorted(
                os.path.relpath(os.path.join(d, f), local_root)
                for d, _, files in os.walk(local_root)
                for f in files
            )

        return listing

    @pytest.fixture
    def broken_target(self, tmp_path: Path) -> ReferenceFolderTarget:
        return ReferenceFolderTarget(
            "b", FolderOptions(path=tmp_path / "missing"), make_context(tmp_path / "state")
        )


class TestMemorySource(SourceConformance):
    @pytest.fixture
    def docs(self) -> list:
        return memory_docs(4)

    @pytest.fixture
    def source(self, docs: list, tmp_path: Path) -> MemorySource:
        return MemorySource("s", MemoryOptions(password="right"), make_context(tmp_path), docs)

    @pytest.fixture
    def secret(self) -> str:
        return "hunter2-very-secret"

    @pytest.fixture
    def broken_source(self, docs: list, tmp_path: Path, secret: str) -> MemorySource:
        return MemorySource("s", MemoryOptions(password=secret), make_context(tmp_path), docs)

    @pytest.fixture
    def add_document(self, docs: list) -> Callable[[], None]:
        return lambda: docs.extend(memory_docs(5)[4:])
