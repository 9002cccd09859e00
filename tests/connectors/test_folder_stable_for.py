"""The ``folder`` source's ``stable_for`` (by its own clock) and ``watch`` options."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from invoicesync.connectors_builtin.folder import FolderSource, FolderSourceOptions
from invoicesync.connectors_builtin.folder.stability import STATE_FILE
from invoicesync.plugins import ConnectorContext, SkippedDocument, SourceDocument, WatchSpec

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The source's clock, moved by hand."""

    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class Recorder:
    """A logger that remembers ``debug`` events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def debug(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def source(
    root: Path, clock: Clock, logger: Recorder | None = None, **options: Any
) -> FolderSource:
    opts = FolderSourceOptions.model_validate({"path": str(root), **options})
    context = ConnectorContext("inbox", root.parent / "state", logger=logger, now=clock.now)
    return FolderSource("inbox", opts, context)


def fetch(src: FolderSource) -> list[str]:
    """External ids of the documents one fetch yields (no skipped ones expected)."""
    gen = src.fetch(None)
    ids = []
    while True:
        try:
            item = next(gen)
        except StopIteration:
            return ids
        assert not isinstance(item, SkippedDocument), item.reason
        assert isinstance(item, SourceDocument)
        ids.append(item.external_id)


def write(path: Path, data: bytes, mtime: datetime) -> Path:
    path.write_bytes(data)
    stamp = mtime.timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_a_file_changed_within_stable_for_waits_and_says_when_to_look_again(root: Path) -> None:
    clock = Clock()
    log = Recorder()
    write(root / "old.pdf", b"old", T0 - timedelta(seconds=60))
    write(root / "new.pdf", b"new", T0 - timedelta(seconds=4))
    src = source(root, clock, log, stable_for="10s")
    assert fetch(src) == ["old.pdf"]
    # 6 s left (10 - 4), plus the small margin that keeps the re-fetch from being early.
    assert src.refetch_after is not None and 6.0 <= src.refetch_after <= 6.2
    assert [(e["event"], e["document"]) for e in log.events] == [
        ("document.deferred", "inbox/new.pdf")
    ]
    assert 6.0 <= log.events[0]["retry_in_s"] <= 6.2

    clock.advance(5)  # 9 s after the change: still waiting
    assert fetch(src) == ["old.pdf"]
    assert src.refetch_after is not None and 1.0 <= src.refetch_after <= 1.2
    clock.advance(1)  # exactly stable_for after the change
    assert fetch(src) == ["new.pdf", "old.pdf"]
    assert src.refetch_after is None


def test_growth_restarts_the_wait(root: Path) -> None:
    clock = Clock()
    pdf = write(root / "scan.pdf", b"part", T0 - timedelta(seconds=8))
    src = source(root, clock, stable_for=10)
    assert fetch(src) == []
    clock.advance(3)
    write(pdf, b"part two", clock.at)  # the scanner wrote more
    assert fetch(src) == []
    assert src.refetch_after is not None and 10.0 <= src.refetch_after <= 10.2
    clock.advance(10)
    assert fetch(src) == ["scan.pdf"]


def test_a_fresh_sidecar_holds_back_its_document(root: Path) -> None:
    clock = Clock()
    write(root / "a.pdf", b"pdf", T0 - timedelta(hours=1))
    write(root / "a.pdf.json", b'{"number": "7"}', T0 - timedelta(seconds=2))
    src = source(root, clock, stable_for=5)
    assert fetch(src) == []
    assert src.refetch_after is not None and 3.0 <= src.refetch_after <= 3.2
    clock.advance(3)
    assert fetch(src) == ["a.pdf"]


def test_a_future_mtime_is_settled_by_observation_across_fetches(root: Path) -> None:
    """A skewed share's mtime lies ahead of our clock: wait stable_for once, not until 2099."""
    clock = Clock()
    pdf = write(root / "skewed.pdf", b"data", T0 + timedelta(days=365))
    assert fetch(source(root, clock, stable_for=30)) == []
    state = root.parent / "state" / STATE_FILE
    assert state.exists()  # the observation outlives this source instance

    clock.advance(20)
    later = source(root, clock, stable_for=30)  # a new run builds a new instance
    assert fetch(later) == []
    assert later.refetch_after is not None and 10.0 <= later.refetch_after <= 10.2

    # A change in between restarts the observation.
    write(pdf, b"data, more", T0 + timedelta(days=365, seconds=1))
    clock.advance(10)
    assert fetch(source(root, clock, stable_for=30)) == []
    clock.advance(30)
    assert fetch(source(root, clock, stable_for=30)) == ["skewed.pdf"]
    assert not state.exists()  # nothing waits any more


def test_a_damaged_observation_file_is_ignored(root: Path) -> None:
    clock = Clock()
    write(root / "a.pdf", b"a", T0 - timedelta(seconds=1))
    state = root.parent / "state" / STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_text('{"a.pdf": ["x", "not a time"], "b": 1', encoding="utf-8")
    src = source(root, clock, stable_for=5)
    assert fetch(src) == []
    clock.advance(4)
    assert fetch(src) == ["a.pdf"]


def test_without_stable_for_nothing_waits(root: Path) -> None:
    clock = Clock()
    write(root / "now.pdf", b"n", T0)
    write(root / "future.pdf", b"f", T0 + timedelta(days=1))
    src = source(root, clock)
    assert fetch(src) == ["future.pdf", "now.pdf"]
    assert src.refetch_after is None
    assert not (root.parent / "state" / STATE_FILE).exists()


def test_watch_spec_only_with_watch(root: Path) -> None:
    assert source(root, Clock()).watch_spec() is None
    spec = source(root, Clock(), watch=True).watch_spec()
    assert isinstance(spec, WatchSpec)
    assert spec.paths == (root.resolve(),) and spec.recursive is True
    relevant = spec.relevant
    assert relevant is not None
    base = spec.paths[0]
    assert relevant(base / "scan.pdf")
    assert relevant(base / "scan.pdf.json")  # a sidecar change changes metadata
    assert relevant(base / "2025" / "03" / "scan.pdf")
    assert relevant(base / "2025")  # a folder moved in
    for ignored in (".scan.pdf.tmp", "scan.pdf.part", "scan.pdf~", "x.crdownload", ".git/x"):
        assert not relevant(base / ignored), ignored


def test_watch_spec_of_a_flat_folder_ignores_sub_folders(root: Path) -> None:
    spec = source(root, Clock(), watch=True, recursive=False).watch_spec()
    assert spec is not None and spec.recursive is False and spec.relevant is not None
    assert spec.relevant(spec.paths[0] / "scan.pdf")
    assert not spec.relevant(spec.paths[0] / "sub" / "scan.pdf")


def test_watch_option_is_a_bool() -> None:
    assert FolderSourceOptions.model_validate({"path": "x"}).watch is False
    with pytest.raises(ValueError):
        FolderSourceOptions.model_validate({"path": "x", "watch": "sometimes"})


def test_watch_ignores_changes_seen_through_a_link_to_a_folder(root: Path, tmp_path: Path) -> None:
    # watchfiles follows links to folders (also outside the root); the walk
    # never enters them, so their changes must not start imports either.
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "linked").symlink_to(outside)
    (root / "sub").mkdir()
    spec = source(root, Clock(), watch=True).watch_spec()
    assert spec is not None and spec.relevant is not None
    base = spec.paths[0]
    assert not spec.relevant(base / "linked" / "secret.pdf")
    assert spec.relevant(base / "linked")  # the link itself appearing: the walk reports it
    assert spec.relevant(base / "sub" / "scan.pdf")
