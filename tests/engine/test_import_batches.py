"""Group commit in the importer: which sources get it, and what they see.

A source that does not set ``batch_commit`` (every plugin written for API 1.2,
the ``imap`` source) still finds each document committed when the engine
resumes it; one that sets it gets its documents committed in batches, with
the same events and counts.
"""

from __future__ import annotations

from collections.abc import Callable

from fixtures import memory_connectors as mem
from invoicesync.daemon.engine.importer import run_import
from invoicesync.daemon.engine.runtime import Runtime
from invoicesync.plugins import SkippedDocument, SourceDocument


def _portal(count: int) -> list[SourceDocument]:
    return [
        SourceDocument(f"d{i:03d}.pdf", f"d{i:03d}.pdf", f"%PDF-1.4 {i}".encode(), cursor=str(i))
        for i in range(count)
    ]


def _committed_on_resume(rt: Runtime) -> list[bool]:
    seen: list[bool] = []
    mem.RESUMED.append(
        lambda document: seen.append(rt.catalog.get(f"portal/{document.external_id}") is not None)
    )
    return seen


def test_a_source_without_batch_commit_finds_each_document_committed_when_resumed(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    mem.PORTAL["portal"] = _portal(5)
    seen = _committed_on_resume(rt)
    summary = run_import(rt, rt.config.sources[0])
    assert summary.error is None and summary.counts["new"] == 5
    assert seen == [True] * 5
    assert rt.catalog.cursor("portal") is None  # the fetch's own return value, last


def test_a_source_with_batch_commit_gets_its_documents_committed_together(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    mem.BATCH_COMMIT.add("portal")
    mem.PORTAL["portal"] = [
        *_portal(3),
        SkippedDocument("bad.pdf", "bad.pdf: unreadable sidecar"),
        *_portal(5)[3:],
    ]
    seen = _committed_on_resume(rt)
    summary = run_import(rt, rt.config.sources[0])
    # Resumed before any commit: the batch was committed at the end.
    assert seen == [False] * 6  # five documents and the skipped one
    assert summary.counts["new"] == 5 and summary.counts["failed"] == 1
    assert rt.catalog.count("portal") == 5
