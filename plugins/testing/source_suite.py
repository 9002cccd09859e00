"""The conformance suite every source passes (SPEC sections 1 and 8).

What it proves: every fetched item is a well-formed
:class:`~invoicesync.plugins.SourceDocument` or
:class:`~invoicesync.plugins.SkippedDocument`; fetching again from the returned
cursor brings nothing unseen; a fetch interrupted after a document resumes from
the last checkpoint without losing or repeating documents; a document added
later shows up after the cursor; a broken configuration fails ``check()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ..connectors import Source
from ..errors import ConnectorError
from ..models import DocumentMetadata, SkippedDocument, SourceDocument
from ._base import ConformanceBase, assert_check_fails_cleanly, assert_no_secret, missing_fixture

__all__ = ["SourceConformance"]

Item = SourceDocument | SkippedDocument


def _drain(
    source: Source[Any], cursor: str | None, *, check: bool = False
) -> tuple[list[Item], str | None]:
    """Run one fetch to the end: the items and the returned cursor.

    With ``check``, each item is checked as it arrives, before the generator
    is resumed: content given as an open file need only be readable until then.
    """
    items: list[Item] = []
    gen = source.fetch(cursor)
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return items, stop.value
        if check:
            _check_item(item)
        items.append(item)


def _ids(items: list[Item]) -> list[str]:
    return [item.external_id for item in items]


def _check_item(item: object) -> None:
    assert isinstance(item, SourceDocument | SkippedDocument), (
        f"fetch() must yield SourceDocument or SkippedDocument, got {type(item).__name__}"
    )
    assert isinstance(item.external_id, str) and item.external_id.strip(), (
        f"external_id must be a non-empty str: {item!r}"
    )
    assert "\x00" not in item.external_id, f"external_id contains NUL: {item.external_id!r}"
    assert item.cursor is None or isinstance(item.cursor, str), "cursor must be str or None"
    if isinstance(item, SkippedDocument):
        assert isinstance(item.reason, str) and item.reason.strip(), (
            f"SkippedDocument {item.external_id!r} must give a reason"
        )
        return
    where = f"document {item.external_id!r}"
    assert isinstance(item.filename, str) and item.filename.strip(), f"{where}: empty filename"
    assert "/" not in item.filename and "\x00" not in item.filename, (
        f"{where}: filename must be a bare file name, got {item.filename!r}"
    )
    if isinstance(item.content, bytes):
        assert item.content, f"{where}: content is empty"
    elif isinstance(item.content, Path):
        assert item.content.is_file(), f"{where}: content path {item.content} is not a file"
    else:
        stream = item.content
        assert callable(getattr(stream, "read", None)) and callable(
            getattr(stream, "seek", None)
        ), f"{where}: content must be bytes, a Path or a seekable binary file object"
        assert not stream.closed, f"{where}: content file is closed before the engine read it"
        stream.seek(0)
        assert isinstance(stream.read(1), bytes), f"{where}: content file must be binary"
    assert item.media_type is None or (
        isinstance(item.media_type, str) and "/" in item.media_type
    ), f"{where}: media_type must be a MIME type such as application/pdf or None"
    assert isinstance(item.metadata, DocumentMetadata), (
        f"{where}: metadata must be a DocumentMetadata"
    )
    try:
        # Built with model_construct(), metadata would skip validation: redo it.
        DocumentMetadata.model_validate(item.metadata.model_dump())
    except ValidationError as exc:
        raise AssertionError(f"{where}: metadata is not valid: {exc}") from None
    assert item.fingerprint is None or isinstance(item.fingerprint, str)


def _checkpoint(items: list[Item], start: str | None) -> str | None:
    """Where the engine resumes after these items: the last cursor they carried."""
    for item in reversed(items):
        if item.cursor is not None:
            return item.cursor
    return start


class SourceConformance(ConformanceBase):
    """Subclass in a test module and define the fixtures below to test a source.

    Required fixtures: ``source`` (a working source with at least
    ``min_documents`` documents) and ``broken_source``. Optional:
    ``add_document`` (adds one more document to what ``source`` sees; when a
    source cannot, declare ``unsupported["test_new_document_after_cursor"]``)
    and ``secret`` (the password ``broken_source`` uses).
    """

    #: The least number of documents ``source`` must offer.
    min_documents = 3

    # -- fixtures the connector's test class provides ------------------------

    @pytest.fixture
    def source(self) -> Source[Any]:
        """A configured, working source with at least ``min_documents`` documents."""
        missing_fixture("SourceConformance", "source", "a working Source with >= 3 documents")

    @pytest.fixture
    def broken_source(self) -> Source[Any]:
        """A source with bad credentials or an unreachable endpoint."""
        missing_fixture(
            "SourceConformance",
            "broken_source",
            "a Source with bad credentials or an unreachable endpoint",
        )

    @pytest.fixture
    def add_document(self) -> Callable[[], None] | None:
        """Adds one more document to the source; None if the source cannot."""
        return None

    @pytest.fixture
    def secret(self) -> str | None:
        """The password ``broken_source`` was configured with (None: nothing to leak)."""
        return None

    @pytest.fixture
    def _closing(self, source: Source[Any]) -> Iterator[Source[Any]]:
        yield source
        source.close()

    # -- the tests ------------------------------------------------------------

    def test_check_passes(self, _closing: Source[Any]) -> None:
        """``check()`` passes on the working source."""
        _closing.check()

    def test_documents_are_valid(self, _closing: Source[Any]) -> None:
        """A full fetch is a generator of well-formed items that returns a str cursor or None.

        Items are SourceDocument or SkippedDocument: non-empty unique ids, bare
        file names, content as bytes, an existing file or an open binary file,
        DocumentMetadata.
        """
        gen = _closing.fetch(None)
        assert inspect.isgenerator(gen), (
            "fetch() must be a generator (it returns the next cursor as its value)"
        )
        gen.close()
        items, cursor = _drain(_closing, None, check=True)
        assert cursor is None or isinstance(cursor, str), (
            f"fetch() must return a str cursor or None, returned {cursor!r}"
        )
        ids = _ids(items)
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        assert not duplicates, f"one fetch yielded these ids twice: {duplicates}"
        documents = [i for i in items if isinstance(i, SourceDocument)]
        assert len(documents) >= self.min_documents, (
            f"the source fixture should offer >= {self.min_documents} documents, "
            f"fetch yielded {len(documents)}"
        )

    def test_fetch_from_returned_cursor_brings_nothing_unseen(self, _closing: Source[Any]) -> None:
        """Fetching again from the returned cursor yields no id the first fetch did not."""
        first, cursor = _drain(_closing, None)
        again, cursor2 = _drain(_closing, cursor)
        unseen = sorted(set(_ids(again)) - set(_ids(first)))
        assert not unseen, f"fetching from the returned cursor yielded unseen ids: {unseen}"
        assert cursor2 is None or isinstance(cursor2, str)

    @pytest.mark.parametrize("interrupt_after", [1, 2])
    def test_resume_after_interruption(self, _closing: Source[Any], interrupt_after: int) -> None:
        """A fetch closed after 1 or 2 documents and resumed from the last checkpoint
        loses nothing and repeats nothing before the checkpoint.
        """
        everything, _ = _drain(_closing, None)
        all_ids = set(_ids(everything))
        gen = _closing.fetch(None)
        taken = [next(gen) for _ in range(interrupt_after)]
        # What a crash or a shutdown looks like to the source: GeneratorExit
        # at the yield; it must clean up and not yield again.
        gen.close()
        checkpoint = _checkpoint(taken, None)
        resumed, _ = _drain(_closing, checkpoint)
        resumed_ids = _ids(resumed)
        duplicates = sorted({i for i in resumed_ids if resumed_ids.count(i) > 1})
        assert not duplicates, f"the resumed fetch yielded ids twice: {duplicates}"
        missing = sorted(all_ids - set(_ids(taken)) - set(resumed_ids))
        assert not missing, f"resuming from checkpoint {checkpoint!r} lost documents: {missing}"
        if checkpoint is not None:
            # Documents stored up to the checkpoint must not come back.
            committed = [
                item.external_id
                for item in taken[: max(i for i, t in enumerate(taken) if t.cursor) + 1]
            ]
            repeated = sorted(set(committed) & set(resumed_ids))
            assert not repeated, (
                f"documents before checkpoint {checkpoint!r} were yielded again: {repeated}"
            )

    def test_new_document_after_cursor(
        self, _closing: Source[Any], add_document: Callable[[], None] | None
    ) -> None:
        """After ``add_document()``, a fetch from the previous cursor yields exactly the new id."""
        if add_document is None:
            pytest.fail(
                "the add_document fixture returned None: provide it, or declare "
                "unsupported = {'test_new_document_after_cursor': 'why'} on the class",
                pytrace=False,
            )
        first, cursor = _drain(_closing, None)
        add_document()
        later, _ = _drain(_closing, cursor, check=True)
        new = set(_ids(later)) - set(_ids(first))
        assert len(new) == 1, (
            f"after add_document(), fetching from cursor {cursor!r} should yield exactly "
            f"one unseen id, got {sorted(new)}"
        )

    def test_broken_source_check_raises(
        self, broken_source: Source[Any], secret: str | None
    ) -> None:
        """``check()`` on ``broken_source`` raises ConnectorError with a message, without the
        secret.
        """
        assert_check_fails_cleanly(broken_source, secret, "source")

    def test_broken_source_fetch_raises_connector_error(
        self, broken_source: Source[Any], secret: str | None
    ) -> None:
        """``fetch()`` on ``broken_source`` raises ConnectorError (not a raw library error),
        without the secret.
        """
        try:
            with pytest.raises(ConnectorError) as caught:
                _drain(broken_source, None)
        finally:
            broken_source.close()
        assert_no_secret(caught.value, secret, "fetch() on a broken source")
