"""Duplicates across sources (catalog) and the einvoice_valid restriction check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fixtures.postgres_schema import fresh_schema, schema_url
from invoicesync.connectors_builtin.checks import EInvoiceValidCheck, EInvoiceValidOptions
from invoicesync.daemon.restrictions import compile_restrictions
from invoicesync.daemon.restrictions.config import RestrictionsConfig
from invoicesync.daemon.storage.blobs import BlobStore
from invoicesync.daemon.storage.catalog import Catalog, Derived, ImportStatus
from invoicesync.daemon.storage.database import create_engine, migrate, open_database
from invoicesync.plugins.models import Document, DocumentMetadata, SourceDocument

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
KEYED = DocumentMetadata(
    number="RE-1",
    gross_amount=Decimal("119.00"),
    currency="EUR",
    fields={"seller_vat_id": "DE123456789"},
)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A migrated catalog on SQLite and on PostgreSQL (migration 0002 on both)."""
    blobs = BlobStore(tmp_path / "state" / "blobs")
    if request.param == "sqlite":
        yield Catalog(open_database(tmp_path / "state"), blobs)
        return
    with fresh_schema("einv") as schema:
        engine: sa.Engine = create_engine(schema_url(schema))
        migrate(engine)
        try:
            yield Catalog(engine, blobs)
        finally:
            engine.dispose()


def doc(ext: str, content: bytes, metadata: DocumentMetadata | None = None) -> SourceDocument:
    return SourceDocument(ext, ext, content, metadata=metadata or DocumentMetadata())


def test_same_content_from_another_source_is_a_duplicate_of_the_first(catalog: Catalog) -> None:
    catalog.store("portal", doc("a.pdf", b"%PDF same"), T0)
    same_source = catalog.store("portal", doc("copy.pdf", b"%PDF same"), T0 + timedelta(1))
    assert same_source.duplicate_of is None  # a source's own business
    outcome = catalog.store("mail", doc("m.pdf", b"%PDF same"), T0 + timedelta(2))
    assert outcome.duplicate_of == "portal/a.pdf"
    stored = catalog.get("mail/m.pdf")
    assert stored is not None and stored.duplicate_of == "portal/a.pdf"
    assert "same content (SHA-256)" in stored.provenance["duplicate_of"]
    # A third copy points at the original, never at another duplicate.
    third = catalog.store("scan", doc("s.pdf", b"%PDF same"), T0 + timedelta(3))
    assert third.duplicate_of == "portal/a.pdf"


def test_the_same_business_key_is_a_duplicate_only_when_all_is_known(catalog: Catalog) -> None:
    catalog.store("portal", doc("a.xml", b"<a/>", KEYED), T0)
    other = KEYED.model_copy(update={"fields": {"seller_vat_id": "DE 123 456 789"}})
    outcome = catalog.store("mail", doc("b.xml", b"<b/>", other), T0 + timedelta(1))
    assert outcome.duplicate_of == "portal/a.xml"
    assert (
        outcome.duplicate_reason == "same seller, number, gross amount and currency as portal/a.xml"
    )
    no_currency = KEYED.model_copy(update={"currency": None})
    partial = catalog.store("mail", doc("c.xml", b"<c/>", no_currency), T0 + timedelta(2))
    assert partial.duplicate_of is None
    other_total = KEYED.model_copy(update={"gross_amount": Decimal("119.01")})
    assert catalog.store("mail", doc("d.xml", b"<d/>", other_total), T0).duplicate_of is None


def test_a_revision_of_the_original_is_a_revision_not_a_duplicate(catalog: Catalog) -> None:
    catalog.store("portal", doc("a.pdf", b"v1", KEYED), T0)
    catalog.store("mail", doc("m.pdf", b"v1"), T0 + timedelta(1))
    revised = catalog.store("portal", doc("a.pdf", b"v2", KEYED), T0 + timedelta(2))
    assert revised.status is ImportStatus.NEW_REVISION and revised.duplicate_of is None
    original = catalog.get("portal/a.pdf")
    assert original is not None and original.duplicate_of is None and original.revision == 2
    # The earlier document never becomes a duplicate of a later one.
    catalog.store("mail", doc("later.pdf", b"v3"), T0 + timedelta(3))
    again = catalog.store("portal", doc("a.pdf", b"v3", KEYED), T0 + timedelta(4))
    assert again.duplicate_of is None


def test_provenance_and_validity_are_stored(catalog: Catalog) -> None:
    derived = Derived({"number": "XRechnung UBL, BT-1"}, False, ("line 3: bad date",))
    catalog.store("portal", doc("a.xml", b"<a/>", KEYED), T0, derived)
    stored = catalog.get("portal/a.xml")
    assert stored is not None
    assert stored.provenance == {"number": "XRechnung UBL, BT-1"}
    assert stored.einvoice_valid is False and stored.einvoice_errors == ("line 3: bad date",)
    # A changed extraction result is a metadata update.
    fixed = catalog.store("portal", doc("a.xml", b"<a/>", KEYED), T0, Derived({}, True))
    assert fixed.status is ImportStatus.METADATA


def document(**fields: object) -> Document:
    base: dict[str, object] = {
        "id": "s/a",
        "source": "s",
        "external_id": "a",
        "import_date": T0,
        "filename": "a.xml",
        "media_type": "application/xml",
        "size": 1,
        "sha256": "ab" * 32,
    }
    return Document.model_validate({**base, **fields})


@pytest.mark.parametrize(
    "valid, wanted, passed",
    [(True, True, True), (False, True, False), (None, True, False), (None, False, True)],
)
def test_einvoice_valid_check(valid: bool | None, wanted: bool, passed: bool) -> None:
    check = EInvoiceValidCheck(EInvoiceValidOptions(wanted))
    outcome = check.evaluate(document(einvoice_valid=valid, einvoice_errors=["line 1: x"]))
    assert outcome.passed is passed
    if valid is False:
        assert "line 1: x" in outcome.reason


def test_the_validity_restriction_through_the_evaluator() -> None:
    config = RestrictionsConfig.model_validate({"attributes": {"einvoice_valid": True}})
    evaluator = compile_restrictions(config, ZoneInfo("UTC"))
    assert evaluator.accepts(document(einvoice_valid=True), T0)
    decision = evaluator.evaluate(document(einvoice_valid=None), T0)
    assert not decision.export and "not a validated e-invoice" in decision.summary


def test_duplicates_are_skipped_unless_the_account_exports_them() -> None:
    dup = document(duplicate_of="p/x", provenance={"duplicate_of": "same content"})
    skip = compile_restrictions(None, ZoneInfo("UTC"), skip_duplicates=True)
    assert not skip.accepts(dup, T0) and skip.accepts(document(), T0)
    decision = skip.evaluate(dup, T0)
    assert decision.summary.startswith("duplicates: duplicate of p/x (same content)")
    export = compile_restrictions(None, ZoneInfo("UTC"), skip_duplicates=False)
    assert export.accepts(dup, T0)
