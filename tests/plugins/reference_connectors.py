"""Small, correct connectors that the conformance suite's own tests point it at.

They are deliberately minimal: a folder target that writes atomically and
refuses unsafe names, and an in-memory source with index cursors.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from invoicesync.plugins import (
    ConnectorOptions,
    ExportItem,
    ExportResult,
    FetchResult,
    PermanentError,
    Source,
    SourceDocument,
    Target,
    TransientError,
)
from invoicesync.plugins.testing import make_context, make_source_document


class FolderOptions(ConnectorOptions):
    path: Path


class ReferenceFolderTarget(Target[FolderOptions]):
    type_name = "reference-folder"
    Options = FolderOptions

    def check(self) -> None:
        if not self.options.path.is_dir():
            raise PermanentError(f"{self.options.path} is not a directory")

    def _destination(self, name: str) -> Path:
        path = PurePosixPath(name)
        bad = (
            not name
            or "\x00" in name
            or path.is_absolute()
            or any(p in ("..", ".") or len(p.encode()) > 255 for p in path.parts)
            or any(ord(c) < 32 for c in name)
        )
        if bad:
            raise PermanentError(f"unsafe remote name {name!r}")
        return self.options.path.joinpath(*path.parts)

    def export(self, item: ExportItem) -> ExportResult:
        dest = self._destination(item.remote_name)
        if not self.options.path.is_dir():
            raise PermanentError(f"{self.options.path} is not a directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with item.open() as src:
                        while chunk := src.read(256 * 1024):
                            out.write(chunk)
                except OSError as exc:
                    raise TransientError(f"reading the content failed: {exc}") from exc
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                if exc.errno in (errno.ENAMETOOLONG, errno.EISDIR):
                    raise PermanentError(f"cannot write {item.remote_name!r}: {exc}") from exc
                raise TransientError(f"cannot write {item.remote_name!r}: {exc}") from exc
            raise
        return ExportResult(remote_ref=item.remote_name)


class MemoryOptions(ConnectorOptions):
    password: str = ""


class MemorySource(Source[MemoryOptions]):
    """A source over a shared list; the cursor is the index of the next document."""

    type_name = "reference-memory"
    Options = MemoryOptions

    def __init__(self, id: str, options: MemoryOptions, context: Any, docs: list[SourceDocument]):
        super().__init__(id, options, context)
        self.docs = docs

    def check(self) -> None:
        if self.options.password != "right":
            raise TransientError("login refused: wrong password")

    def fetch(self, cursor: str | None) -> FetchResult:
        self.check()
        start = int(cursor or 0)
        for i in range(start, len(self.docs)):
            doc = self.docs[i]
            yield SourceDocument(
                doc.external_id,
                doc.filename,
                doc.content,
                doc.media_type,
                doc.metadata,
                cursor=str(i + 1),
            )
        return str(len(self.docs))


def memory_docs(n: int) -> list[SourceDocument]:
    return [make_source_document(f"doc-{i}", b"%%PDF-1.4 %d" % i) for i in range(n)]


class FolderTargetFixtures:
    """The suite's fixtures for any folder-like target class (``target_class``)."""

    target_class: type[Target[Any]] = ReferenceFolderTarget

    @pytest.fixture
    def local_root(self, tmp_path: Path) -> Path:
        root = tmp_path / "remote"
        root.mkdir()
        return root

    @pytest.fixture
    def target(self, local_root: Path, tmp_path: Path) -> Target[Any]:
        return self.target_class(
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
    def broken_target(self, tmp_path: Path) -> Target[Any]:
        return self.target_class(
            "b", FolderOptions(path=tmp_path / "missing"), make_context(tmp_path / "state")
        )


class MemorySourceFixtures:
    """The suite's fixtures for any in-memory source class (``source_class``)."""

    source_class: type[MemorySource] = MemorySource

    @pytest.fixture
    def docs(self) -> list[SourceDocument]:
        return memory_docs(4)

    @pytest.fixture
    def source(self, docs: list[SourceDocument], tmp_path: Path) -> MemorySource:
        return self.source_class("s", MemoryOptions(password="right"), make_context(tmp_path), docs)

    @pytest.fixture
    def secret(self) -> str:
        return "hunter2-very-secret"

    @pytest.fixture
    def broken_source(
        self, docs: list[SourceDocument], tmp_path: Path, secret: str
    ) -> MemorySource:
        return self.source_class("s", MemoryOptions(password=secret), make_context(tmp_path), docs)

    @pytest.fixture
    def add_document(self, docs: list[SourceDocument]) -> Callable[[], None]:
        return lambda: docs.extend(memory_docs(5)[4:])
