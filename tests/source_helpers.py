"""Driving a Source the way the engine does, for the source connector tests."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoicesync.plugins import SkippedDocument, Source, SourceDocument

MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def pdf(tag: str, size: int = 0) -> bytes:
    """A small distinct PDF; padded with a comment to ``size`` bytes if given."""
    body = MINIMAL_PDF + f"% {tag}\n".encode()
    if size > len(body):
        body += b"%" + b"x" * (size - len(body) - 2) + b"\n"
    return body


@dataclass
class Stored:
    """One document as the engine's catalog would have committed it."""

    external_id: str
    filename: str
    content: bytes
    media_type: str | None
    doc: SourceDocument
    was_path: bool


class RecordingLogger:
    """A stand-in for the structlog logger in ConnectorContext: records every call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return log

    def names(self) -> list[str]:
        return [event for _, event, _ in self.events]

    def text(self) -> str:
        return "\n".join(f"{lvl} {ev} {fields!r}" for lvl, ev, fields in self.events)


@dataclass
class FetchRun:
    """What one fetch produced: documents, skips, checkpoints and the final cursor."""

    stored: list[Stored] = field(default_factory=list)
    skipped: list[SkippedDocument] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    cursor: str | None = None

    @property
    def ids(self) -> list[str]:
        return [s.external_id for s in self.stored]


def commit(item: SourceDocument | SkippedDocument, run: FetchRun) -> None:
    """What the catalog does with one yielded item (before asking for the next)."""
    if isinstance(item, SkippedDocument):
        run.skipped.append(item)
        if item.cursor:
            run.checkpoints.append(item.cursor)
        return
    content = item.content
    was_path = isinstance(content, Path)
    if isinstance(content, Path):
        data = content.read_bytes()
    elif isinstance(content, bytes):
        data = content
    else:  # an open file: readable only until the generator is resumed
        content.seek(0)
        data = content.read()
    run.stored.append(
        Stored(item.external_id, item.filename, data, item.media_type, item, was_path)
    )
    if item.cursor:
        run.checkpoints.append(item.cursor)


def run_fetch(
    source: Source[Any], cursor: str | None = None, *, limit: int | None = None
) -> FetchRun:
    """Drive ``source.fetch`` like the engine: commit each item, then resume.

    With ``limit``, stop after that many items and close the generator (an
    engine that abandons the fetch, e.g. on shutdown).
    """
    run = FetchRun()
    gen: Generator[SourceDocument | SkippedDocument, None, str | None] = source.fetch(cursor)
    try:
        while True:
            item = next(gen)
            commit(item, run)
            if limit is not None and len(run.stored) + len(run.skipped) >= limit:
                gen.close()
                return run
    except StopIteration as stop:
        run.cursor = stop.value
    return run
