"""The ``paperless`` target passes invoicesync's connector conformance suite."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import ClassVar

import pytest
from fake_paperless import FakePaperless
from invoicesync.plugins.testing import TargetConformance
from invoicesync_paperless import PaperlessTarget
from paperless_fixtures import MakeTarget


def remote_name(title: str, original_file_name: str) -> str:
    """How the target names a document: title plus the uploaded file's extension."""
    return title + PurePosixPath(original_file_name).suffix


class TestPaperlessConformance(TargetConformance):
    # A Paperless title is a label, not a path: a hostile name can only ever
    # become a strange title, so the suite need not check listed names as paths.
    remote_names_are_paths = False
    unsupported: ClassVar[dict[str, str]] = {
        "test_new_revision_replaces_content": (
            "Paperless-ngx cannot replace a document's file through its upload API and "
            "invoicesync never deletes remotely: a new revision becomes a new document"
        ),
    }

    @pytest.fixture
    def target(self, make_target: MakeTarget) -> PaperlessTarget:
        return make_target()

    @pytest.fixture
    def read_remote(self, paperless: FakePaperless):  # type: ignore[no-untyped-def]
        def read(name: str) -> bytes | None:
            found = [
                d.content
                for d in paperless.documents.values()
                if remote_name(d.title, d.original_file_name) == name
            ]
            assert len(found) <= 1, f"{len(found)} documents are called {name!r}"
            return found[0] if found else None

        return read

    @pytest.fixture
    def list_remote(self, paperless: FakePaperless):  # type: ignore[no-untyped-def]
        def listing() -> list[str]:
            return [
                remote_name(d.title, d.original_file_name) for d in paperless.documents.values()
            ]

        return listing

    @pytest.fixture
    def secret(self) -> str:
        return "wrong-token-7f3a9c1e"

    @pytest.fixture
    def broken_target(self, make_target: MakeTarget, secret: str) -> PaperlessTarget:
        return make_target(token=secret)
