"""Group commit of exports: intents, one durability barrier, outcomes (issue 13).

Against ``memory-deferred``, an in-memory target that defers durability
(plugin API 1.3): what it exported is only "durable" (in ``mem.STORE``) once
``barrier()`` ran. The ledger must never say *exported* before that.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures import memory_connectors as mem
from invoicesync.daemon.config.loader import load_config
from invoicesync.daemon.engine import exporter
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.runtime import Runtime, open_runtime
from invoicesync.daemon.engine.sync import sync
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.daemon.storage.ledger import LedgerState
from invoicesync.plugins import hookimpl

item = mem.item


class _Seen:
    """Records, for each exported-hook call, what the ledger said then."""

    def __init__(self) -> None:
        self.rt: Runtime | None = None
        self.states: list[LedgerState | None] = []

    @hookimpl
    def invoicesync_document_exported(self, document: Any) -> None:
        assert self.rt is not None
        entry = self.rt.ledger.entry("out", document.id)
        self.states.append(None if entry is None else entry.state)


@pytest.fixture
def seen() -> _Seen:
    return _Seen()


@pytest.fixture
def runtime(tmp_path: Path, seen: _Seen) -> Iterator[Any]:
    opened: list[Runtime] = []

    def make(options: str = "{}", concurrency: int = 1, target: str = "memory-deferred") -> Runtime:
        registry = load_plugins(entry_points=False, extra=[mem, seen])
        config = tmp_path / "invoicesync.yaml"
        config.write_text(
            "version: 1\nstate: ./state\ncompanies: [{id: acme}]\n"
            "sources: [{id: portal, type: memory}]\n"
            f"exports: [{{id: out, type: {target}, filename: '{{number}}.{{ext}}',"
            f" concurrency: {concurrency}, options: {options},"
            " retry: {attempts: 2, initial: 0.01s, max: 0.05s}}]\n"
        )
        rt = open_runtime(load_config(config, registry), registry, Clock(mem.NOW))
        seen.rt = rt
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()


def _documents(n: int) -> list[Any]:
    return [item(f"d{i}", f"content {i}".encode(), company="acme", number=str(i)) for i in range(n)]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_nothing_is_recorded_as_exported_before_its_barrier(
    runtime: Any, seen: _Seen, monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    monkeypatch.setattr(exporter, "BATCH_SIZE", 4)
    mem.PORTAL["portal"] = _documents(10)
    rt = runtime(concurrency=concurrency)
    at_barrier: list[dict[LedgerState, int]] = []
    mem.ON_BARRIER.append(lambda: at_barrier.append(rt.ledger.counts("out")))

    result = sync(rt)

    assert result.ok and result.exports[0].counts["exported"] == 10
    assert mem.STORE["out"] == {f"{i}.pdf": f"content {i}".encode() for i in range(10)}
    # Commits of at most 4: at least three, each after a barrier; a barrier
    # covers every export that returned (more than its batch, perhaps), so at
    # each barrier the ledger holds at most what earlier barriers covered.
    assert len(mem.BARRIERS) >= 3
    durable = 0
    for names, counts in zip(mem.BARRIERS, at_barrier, strict=True):
        assert counts[LedgerState.EXPORTED] <= durable
        durable += len(names)
    assert sorted(n for b in mem.BARRIERS for n in b) == sorted(mem.STORE["out"])
    # The hook runs after the commit: it always sees "exported".
    assert seen.states == [LedgerState.EXPORTED] * 10


def test_a_failed_barrier_records_its_batch_as_failed_and_a_retry_uses_the_same_names(
    runtime: Any,
) -> None:
    mem.PORTAL["portal"] = _documents(2)
    rt = runtime("{barrier_error: 'disk gone'}")
    first = sync(rt).exports[0]
    assert first.counts["exported"] == 0 and first.counts["failed"] == 2
    for doc in ("portal/d0", "portal/d1"):
        entry = rt.ledger.entry("out", doc)
        assert entry is not None and entry.state is LedgerState.FAILED
        assert "disk gone" in (entry.last_error or "")
    assert "out" not in mem.STORE

    rt.close()
    rt = runtime()  # the disk is back
    assert rt.ledger.reset_for_retry("out", mem.NOW) == 2
    again = sync(rt).exports[0]
    assert again.counts["exported"] == 2
    assert sorted(mem.STORE["out"]) == ["0.pdf", "1.pdf"]  # the same names, no twins
    assert {e.remote_name for e in rt.ledger.entries("out")} == {"0.pdf", "1.pdf"}


def test_a_target_without_deferred_durability_never_gets_a_barrier(runtime: Any) -> None:
    mem.PORTAL["portal"] = _documents(3)
    rt = runtime(target="memory")
    assert sync(rt).exports[0].counts["exported"] == 3
    assert mem.BARRIERS == []


def test_documents_never_tried_after_an_abort_stay_plainly_pending(runtime: Any) -> None:
    mem.PORTAL["portal"] = _documents(8)
    rt = runtime(target="memory", options="{fail_transient: 1000}")
    summary = sync(rt).exports[0]
    assert summary.counts["failed"] == 3 and summary.error is not None
    entries = list(rt.ledger.entries("out"))
    # Reserved with their batch but never tried: their intents were dropped.
    assert [e.state for e in entries] == [LedgerState.FAILED] * 3
