"""The export engine against in-memory connectors: eligibility, names, revisions,
retries, rejections, crash recovery and dry runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from fixtures import memory_connectors as mem
from invoicesync.daemon.config.loader import load_config
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.runtime import Runtime, open_runtime
from invoicesync.daemon.engine.sync import fetch, sync
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.daemon.storage.ledger import LedgerState

NOW = mem.NOW
item = mem.item


def test_exports_each_document_once(make_runtime: Callable[..., Runtime]) -> None:
    mem.PORTAL["portal"] = [
        item("a", b"A", company="acme", number="1"),
        item("b", b"B", company="other", number="2"),
    ]
    rt = make_runtime()
    result = sync(rt)
    assert result.ok
    assert mem.STORE["out"] == {"acme/1.pdf": b"A", "other/2.pdf": b"B"}
    again = sync(rt)
    assert again.exports[0].counts["exported"] == 0
    assert mem.CALLS["out"] == 2


def test_changed_content_goes_to_the_same_name(make_runtime: Callable[..., Runtime]) -> None:
    mem.PORTAL["portal"] = [item("a", b"v1", company="acme", number="1")]
    rt = make_runtime()
    sync(rt)
    # New content and a new number: the remote name stays the one it holds.
    mem.PORTAL["portal"] = [item("a", b"v2", company="acme", number="9")]
    result = sync(rt)
    assert result.exports[0].counts["exported"] == 1
    assert mem.STORE["out"] == {"acme/1.pdf": b"v2"}


def test_on_update_ignore_keeps_the_first_revision(make_runtime: Callable[..., Runtime]) -> None:
    mem.PORTAL["portal"] = [item("a", b"v1", company="acme", number="1")]
    rt = make_runtime("    on_update: ignore\n")
    sync(rt)
    mem.PORTAL["portal"] = [item("a", b"v2", company="acme", number="1")]
    sync(rt)
    assert mem.STORE["out"] == {"acme/1.pdf": b"v1"}


def test_name_collision_gets_the_sha8_suffix(make_runtime: Callable[..., Runtime]) -> None:
    mem.PORTAL["portal"] = [
        item("a", b"A", company="acme", number="1"),
        item("b", b"B", company="acme", number="1"),
    ]
    rt = make_runtime()
    sync(rt)
    b = rt.catalog.get("portal/b")
    assert b is not None
    assert mem.STORE["out"] == {"acme/1.pdf": b"A", f"acme/1_{b.sha8}.pdf": b"B"}


def test_transient_failures_are_retried_and_export_once(
    make_runtime: Callable[..., Runtime],
) -> None:
    mem.PORTAL["portal"] = [item("a", b"A", company="acme", number="1")]
    rt = make_runtime("    options: {fail_transient: 2}\n")
    result = sync(rt)
    assert result.ok
    assert mem.CALLS["out"] == 3
    assert mem.STORE["out"] == {"acme/1.pdf": b"A"}
    entry = rt.ledger.entry("out", "portal/a")
    assert entry is not None and entry.state is LedgerState.EXPORTED


def test_permanent_refusal_is_rejected_until_retry(make_runtime: Callable[..., Runtime]) -> None:
    mem.PORTAL["portal"] = [item("a", b"A", company="acme", number="1")]
    rt = make_runtime("    options: {reject: 'file type not accepted'}\n")
    result = sync(rt)
    assert not result.ok
    entry = rt.ledger.entry("out", "portal/a")
    assert entry is not None and entry.state is LedgerState.REJECTED
    assert entry.last_error == "file type not accepted"
    sync(rt)
    assert mem.CALLS["out"] == 1  # rejected documents wait for `retry`
    assert rt.ledger.reset_for_retry("out", NOW) == 1
    sync(rt)
    assert mem.CALLS["out"] == 2


def test_exhausted_retries_leave_failed_and_stop_after_three(
    make_runtime: Callable[..., Runtime],
) -> None:
    mem.PORTAL["portal"] = [
        item(str(i), bytes([i]), company="acme", number=str(i)) for i in range(6)
    ]
    rt = make_runtime("    options: {fail_transient: 1000}\n")
    result = sync(rt)
    summary = result.exports[0]
    assert summary.counts["failed"] == 3 and summary.error is not None
    assert mem.CALLS["out"] == 9  # three documents, three attempts each, then the run stops
    assert rt.ledger.counts("out")[LedgerState.FAILED] == 3


def test_interrupted_export_resumes_to_the_same_name(make_runtime: Callable[..., Runtime]) -> None:
    mem.PORTAL["portal"] = [item("a", b"A", company="acme", number="1")]
    rt = make_runtime()
    fetch(rt)
    doc = rt.catalog.get("portal/a")
    assert doc is not None
    # A crash after the intent was committed and the target wrote, before the
    # outcome was committed: the ledger says "exporting".
    rt.ledger.reserve("out", "portal/a", 1, doc.sha256, "acme/1.pdf", NOW)
    mem.STORE["out"] = {"acme/1.pdf": b"A"}
    result = sync(rt, fetch_first=False)
    assert result.exports[0].counts["exported"] == 1
    assert mem.STORE["out"] == {"acme/1.pdf": b"A"}  # one copy, same name
    entry = rt.ledger.entry("out", "portal/a")
    assert entry is not None and entry.state is LedgerState.EXPORTED


def test_dry_run_plans_without_writing(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    mem.PORTAL["portal"] = [item("a", b"A", company="acme", number="1")]
    rt = make_runtime(dry_run=True)
    plans: list[Any] = []
    result = sync(rt, on_plan=plans.append)
    assert [(p.document_id, p.remote_name) for p in plans] == [("portal/a", "acme/1.pdf")]
    assert "new" in plans[0].reason
    assert result.exports[0].counts["planned"] == 1
    assert mem.STORE == {} and "out" not in mem.CALLS
    assert not (tmp_path / "state").exists()


class _RaisingListener:
    @staticmethod
    def invoicesync_document_exported(document: Any) -> None:
        raise RuntimeError("listener bug")


class _RecordingListener:
    seen: ClassVar[list[str]] = []

    @staticmethod
    def invoicesync_document_exported(document: Any, remote_name: str) -> None:
        _RecordingListener.seen.append(remote_name)


def test_a_raising_event_hook_breaks_neither_the_export_nor_other_plugins(
    tmp_path: Path,
) -> None:
    from invoicesync.plugins import hookimpl

    for cls in (_RaisingListener, _RecordingListener):
        hookimpl(cls.invoicesync_document_exported)
    _RecordingListener.seen.clear()
    registry = load_plugins(
        entry_points=False, extra=[mem, _RecordingListener(), _RaisingListener()]
    )
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        "version: 1\nstate: ./state\ncompanies: [{id: acme}]\n"
        "sources: [{id: portal, type: memory}]\n"
        "exports: [{id: out, type: memory, filename: '{number}.{ext}'}]\n"
    )
    mem.PORTAL["portal"] = [item("a", b"A", company="acme", number="1")]
    rt = open_runtime(load_config(config, registry), registry, Clock(NOW))
    try:
        assert sync(rt).ok
    finally:
        rt.close()
    assert mem.STORE["out"] == {"1.pdf": b"A"}
    assert _RecordingListener.seen == ["1.pdf"]
