"""Catalog.fingerprints: the importer's lookup in sorted pages (issue 13), both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fixtures.postgres_schema import fresh_schema, schema_url
from invoicesync.daemon.storage.blobs import BlobStore
from invoicesync.daemon.storage.catalog import Catalog, Fingerprints
from invoicesync.daemon.storage.database import create_engine, migrate, open_database
from invoicesync.plugins.models import SourceDocument

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    blobs = BlobStore(tmp_path / "state" / "blobs")
    if request.param == "sqlite":
        yield Catalog(open_database(tmp_path / "state"), blobs)
        return
    with fresh_schema("fingerprints") as schema:
        engine: sa.Engine = create_engine(schema_url(schema))
        migrate(engine)
        try:
            yield Catalog(engine, blobs)
        finally:
            engine.dispose()


# Names whose code-point order differs from a natural-language collation's
# ("a-b" before "a/x"; upper case before lower case; "é" after "z").
NAMES = sorted(
    [
        "A.pdf",
        "a-b.pdf",
        "a.pdf",
        "a/x.pdf",
        "a/y/z.pdf",
        "a0.pdf",
        "b b.pdf",
        "z.pdf",
        "é.pdf",
        "ü/1.pdf",
    ]
    + [f"bulk/{i:04d}.pdf" for i in range(700)]
)


def store_all(catalog: Catalog, source: str, names: list[str]) -> dict[str, str]:
    expected = {}
    for name in names:
        fingerprint = f"fp-{source}-{name}"
        catalog.store(
            source,
            SourceDocument(
                name, name.rsplit("/", 1)[-1], b"x" + name.encode(), fingerprint=fingerprint
            ),
            NOW,
        )
        expected[name] = fingerprint
    return expected


def test_sorted_lookups_page_through_with_few_queries(catalog: Catalog) -> None:
    expected = store_all(catalog, "inbox", NAMES)
    store_all(catalog, "inbox2", ["a.pdf", "zz.pdf"])  # a neighbour whose ids sort right after
    lookup = catalog.fingerprints("inbox")
    asked = sorted([*NAMES, "a-a.pdf", "new/1.pdf", "zzz.pdf"])  # with names not in the catalog
    got = {name: lookup.get(name) for name in asked}
    assert got == {name: expected.get(name) for name in asked}
    # Pages grow while the lookups walk through them: far fewer queries than names.
    assert lookup.queries <= 12, lookup.queries
    # Memory is one page, never the whole source.
    assert len(lookup._rows) <= Fingerprints.MAX_PAGE


def test_unordered_and_repeated_lookups_stay_correct(catalog: Catalog) -> None:
    expected = store_all(catalog, "inbox", NAMES[:60])
    lookup = catalog.fingerprints("inbox")
    order = [*reversed(NAMES[:60]), *NAMES[:60:7], "missing.pdf", NAMES[30], NAMES[0]]
    for name in order:
        assert lookup.get(name) == expected.get(name), name
    assert catalog.fingerprints("other").get(NAMES[0]) is None


def test_a_document_without_fingerprint_reads_as_none(catalog: Catalog) -> None:
    catalog.store("inbox", SourceDocument("a.pdf", "a.pdf", b"1"), NOW)
    assert catalog.fingerprints("inbox").get("a.pdf") is None
    assert catalog.fingerprints("inbox").get("a.pdf", "dflt") == "dflt"
