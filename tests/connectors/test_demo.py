"""The ``demo`` source: deterministic, varied, resumable, real PDFs."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import require_program
from invoicesync.connectors_builtin.demo import DEMO_COMPANIES, DemoOptions, DemoSource
from invoicesync.connectors_builtin.demo.pdf import PdfLine, render_pdf
from invoicesync.connectors_builtin.demo.portal import HISTORY_DAYS, generate
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import (
    ConnectorContext,
    ConnectorError,
    DocumentMetadata,
    DocumentType,
    PaymentStatus,
    SkippedDocument,
    SourceDocument,
)
from pydantic import ValidationError

ANCHOR = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def make_source(tmp_path: Path, *, now: datetime = ANCHOR, **options: object) -> DemoSource:
    context = ConnectorContext("demo", tmp_path, now=lambda: now)
    return DemoSource("demo", DemoOptions.model_validate(options), context)


def drain(source: DemoSource, cursor: str | None) -> tuple[list[SourceDocument], str | None]:
    docs: list[SourceDocument] = []
    gen = source.fetch(cursor)
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return docs, stop.value
        assert not isinstance(item, SkippedDocument), item
        docs.append(item)


def snapshot(doc: SourceDocument) -> tuple[object, ...]:
    return (doc.external_id, doc.filename, doc.metadata, doc.content, doc.cursor)


def test_registered_as_builtin_plugin() -> None:
    registry = load_plugins(entry_points=False)
    assert registry.sources["demo"] is DemoSource


def test_same_seed_count_and_anchor_give_identical_documents(tmp_path: Path) -> None:
    first, cursor1 = drain(make_source(tmp_path, count=60, seed=7), None)
    second, cursor2 = drain(make_source(tmp_path, count=60, seed=7), None)
    assert len(first) == 60
    assert [snapshot(d) for d in first] == [snapshot(d) for d in second]
    assert cursor1 == cursor2
    other, _ = drain(make_source(tmp_path, count=60, seed=8), None)
    assert [d.content for d in other] != [d.content for d in first]


def test_document_does_not_depend_on_count_or_position(tmp_path: Path) -> None:
    # Generating document 30 alone gives what a full run gives at position 30:
    # what makes resuming in the middle possible.
    docs, _ = drain(make_source(tmp_path, count=40), None)
    alone = generate(30, 42, ANCHOR.date())
    assert docs[30].content == alone.content
    assert docs[30].metadata == alone.metadata


@pytest.fixture(scope="module")
def sample() -> list[SourceDocument]:
    context = ConnectorContext("demo", Path("/nonexistent"), now=lambda: ANCHOR)
    docs, _ = drain(DemoSource("demo", DemoOptions(count=200), context), None)
    return docs


def test_sample_covers_every_type_status_company_and_currency(
    sample: list[SourceDocument],
) -> None:
    metas = [d.metadata for d in sample]
    assert {m.type for m in metas} == set(DocumentType)
    assert {m.payment_status for m in metas} == set(PaymentStatus)
    assert {m.company for m in metas} == {cid for cid, _ in DEMO_COMPANIES}
    assert {m.currency for m in metas} == {"EUR", "USD", None}
    assert any(m.gross_amount is None and m.currency is None for m in metas)
    assert any(m.gross_amount is not None and m.currency is None for m in metas)
    assert any(m.approved for m in metas) and not all(m.approved for m in metas)
    assert any(m.note for m in metas) and not all(m.note for m in metas)
    assert any(m.number is None for m in metas)


def test_tags_fields_and_notes_look_like_user_data(sample: list[SourceDocument]) -> None:
    tags = set().union(*(d.metadata.tags for d in sample))
    # Case variety on purpose: restrictions match tags case-insensitively.
    assert {"travel", "Travel"} <= tags
    assert "private" in {t.lower() for t in tags}
    assert {"office", "software"} <= {t.lower() for t in tags}
    centers = {d.metadata.fields.get("cost_center") for d in sample}
    assert {"4711", "4712"} <= centers
    assert None in centers  # not every document has one


def test_dates_numbers_and_amounts_are_consistent(sample: list[SourceDocument]) -> None:
    anchor = ANCHOR.date()
    oldest = anchor - timedelta(days=HISTORY_DAYS)
    for i, doc in enumerate(sample):
        meta = doc.metadata
        assert doc.external_id == f"inv-{i + 1:06d}"
        assert meta.document_date is not None
        assert oldest < meta.document_date <= anchor
        if meta.due_date is not None:
            assert meta.type in (DocumentType.INCOMING_INVOICE, DocumentType.SALES_INVOICE)
            assert meta.due_date > meta.document_date
        if meta.number is not None:
            match = re.fullmatch(r"([A-Z]{2,3})-(\d{4})-(\d{6})", meta.number)
            assert match, meta.number
            assert int(match.group(2)) == meta.document_date.year
            assert int(match.group(3)) == i + 1
            assert doc.filename == f"{meta.number}.pdf"
        else:
            assert doc.filename == f"{doc.external_id}.pdf"
        if meta.gross_amount is not None:
            assert isinstance(meta.gross_amount, Decimal)
            assert isinstance(meta.net_amount, Decimal)
            assert meta.gross_amount.as_tuple().exponent == -2
            assert Decimal(0) < meta.net_amount <= meta.gross_amount
        if meta.type in (DocumentType.RECEIPT, DocumentType.PAYMENT_RECEIPT):
            assert meta.payment_status is PaymentStatus.PAID
    years = {d.metadata.document_date.year for d in sample if d.metadata.document_date}
    assert years == {2024, 2025, 2026}


def test_generated_metadata_passes_validation(sample: list[SourceDocument]) -> None:
    # The generator skips pydantic validation for speed; this keeps it honest.
    for doc in sample:
        dumped = doc.metadata.model_dump()
        assert DocumentMetadata.model_validate(dumped) == doc.metadata
        assert doc.media_type == "application/pdf"


def test_cursor_keeps_the_anchor_and_yields_only_new_documents(tmp_path: Path) -> None:
    _, cursor = drain(make_source(tmp_path, count=5), None)
    assert cursor is not None
    assert json.loads(cursor) == {"anchor": "2026-11-28", "emitted": 5, "seed": 42}
    # A month later, with the same cursor: nothing new, nothing changed.
    later = ANCHOR + timedelta(days=30)
    again, cursor2 = drain(make_source(tmp_path, now=later, count=5), cursor)
    assert again == []
    assert cursor2 == cursor
    # Raising count yields just the new ones, dated against the kept anchor.
    more, cursor3 = drain(make_source(tmp_path, now=later, count=8), cursor)
    assert [d.external_id for d in more] == ["inv-000006", "inv-000007", "inv-000008"]
    full, _ = drain(make_source(tmp_path, count=8), None)
    assert [snapshot(d) for d in more] == [snapshot(d) for d in full[5:]]
    assert cursor3 is not None and json.loads(cursor3)["emitted"] == 8


def test_interrupted_fetch_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    source = make_source(tmp_path, count=10)
    gen = source.fetch(None)
    taken = [next(gen) for _ in range(4)]
    gen.close()  # the process died after storing four documents
    checkpoint = taken[-1].cursor
    assert checkpoint is not None and json.loads(checkpoint)["emitted"] == 4
    rest, _ = drain(make_source(tmp_path, count=10), checkpoint)
    full, _ = drain(make_source(tmp_path, count=10), None)
    assert [snapshot(d) for d in taken + rest] == [snapshot(d) for d in full]


def test_stop_event_ends_the_fetch_with_a_resumable_cursor(tmp_path: Path) -> None:
    source = make_source(tmp_path, count=10)
    gen = source.fetch(None)
    first = [next(gen) for _ in range(3)]
    source.context.stop.set()
    remaining, cursor = [], None
    while True:
        try:
            remaining.append(next(gen))
        except StopIteration as stop:
            cursor = stop.value
            break
    assert remaining == []
    assert cursor is not None and json.loads(cursor)["emitted"] == len(first)


def test_changing_the_seed_starts_over(tmp_path: Path) -> None:
    _, cursor = drain(make_source(tmp_path, count=3, seed=1), None)
    docs, cursor2 = drain(make_source(tmp_path, count=3, seed=2), cursor)
    assert [d.external_id for d in docs] == ["inv-000001", "inv-000002", "inv-000003"]
    assert cursor2 is not None and json.loads(cursor2)["seed"] == 2


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "[]",
        '{"anchor": "2026-13-01", "emitted": 1}',
        '{"anchor": "2026-01-01"}',
        '{"anchor": "2026-01-01", "emitted": -1}',
        '{"anchor": "2026-01-01", "emitted": true}',
    ],
)
def test_foreign_cursor_is_a_clear_error(tmp_path: Path, cursor: str) -> None:
    with pytest.raises(ConnectorError, match="cursor"):
        drain(make_source(tmp_path), cursor)


@pytest.mark.parametrize(
    "options",
    [{"count": -1}, {"count": 1_000_001}, {"seed": -5}, {"count": "many"}, {"colour": "red"}],
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DemoOptions.model_validate(options)


def test_defaults() -> None:
    options = DemoOptions()
    assert (options.count, options.seed) == (50, 42)


def test_count_zero_yields_nothing(tmp_path: Path) -> None:
    docs, cursor = drain(make_source(tmp_path, count=0), None)
    assert docs == []
    assert cursor is not None and json.loads(cursor)["emitted"] == 0


def _pick_varied(sample: list[SourceDocument]) -> list[SourceDocument]:
    """One document per (type, has amount) combination: varied PDF layouts."""
    picked: dict[tuple[object, bool], SourceDocument] = {}
    for doc in sample:
        key = (doc.metadata.type, doc.metadata.gross_amount is not None)
        picked.setdefault(key, doc)
    return list(picked.values())


def test_pdfs_are_valid_and_carry_the_invoice_text(
    sample: list[SourceDocument], tmp_path: Path
) -> None:
    qpdf = require_program("qpdf", "qpdf")
    pdftotext = require_program("pdftotext", "poppler-utils")
    names = dict(DEMO_COMPANIES)
    docs = _pick_varied(sample)
    assert len(docs) >= 8
    for doc in docs:
        assert isinstance(doc.content, bytes)
        path = tmp_path / doc.filename
        path.write_bytes(doc.content)
        check = subprocess.run([qpdf, "--check", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "No syntax or stream encoding errors" in check.stdout
        text = subprocess.run(
            [pdftotext, "-layout", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout
        meta = doc.metadata
        assert meta.company is not None and names[meta.company] in text
        assert doc.external_id in text
        assert f"Date: {meta.document_date:%Y-%m-%d}" in text
        if meta.number:
            assert meta.number in text
        if meta.gross_amount is not None:
            assert f"{meta.gross_amount:,.2f}" in text
        if meta.note:
            assert meta.note in text


def test_pdf_structure_offsets_are_exact(sample: list[SourceDocument]) -> None:
    # Independent of qpdf: every xref entry points at "N 0 obj", and
    # startxref at the xref keyword.
    for doc in sample[:20]:
        data = doc.content
        assert isinstance(data, bytes)
        assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n")
        startxref = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
        assert data[startxref:].startswith(b"xref\n0 8\n")
        entries = data[startxref:].split(b"\n")[3:10]
        for number, entry in enumerate(entries, start=1):
            offset = int(entry[:10])
            assert data[offset:].startswith(b"%d 0 obj\n" % number)




def test_anchor_comes_from_the_context_clock(tmp_path: Path) -> None:
    now: Callable[[], datetime] = lambda: datetime(2030, 1, 15, 23, 59, tzinfo=UTC)  # noqa: E731
    source = DemoSource("demo", DemoOptions(count=3), ConnectorContext("d", tmp_path, now=now))
    docs, cursor = drain(source, None)
    assert cursor is not None and json.loads(cursor)["anchor"] == "2030-01-15"
    assert all(
        d.metadata.document_date is not None and d.metadata.document_date <= date(2030, 1, 15)
        for d in docs
    )


def test_pdf_writer_escapes_and_encodes_text(tmp_path: Path) -> None:
    pdftotext = require_program("pdftotext", "poppler-utils")
    pdfinfo = require_program("pdfinfo", "poppler-utils")
    lines = [
        PdfLine(50, 780, "Bürobedarf (Rechnung) 12,00 € \\ ok", 14, bold=True),
        PdfLine(50, 760, "ctrl\x00\x1bchars and 漢字"),
    ]
    data = render_pdf(lines, title="Gutschrift Ü (1)", day=date(2025, 1, 2), rules=[770])
    assert data == render_pdf(lines, title="Gutschrift Ü (1)", day=date(2025, 1, 2), rules=[770])
    path = tmp_path / "t.pdf"
    path.write_bytes(data)
    text = subprocess.run(
        [pdftotext, str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Bürobedarf (Rechnung) 12,00 € \\ ok" in text
    # Control characters are blanked, characters WinAnsi lacks become "?".
    assert "ctrl chars and ??" in text
    assert b"\x00" not in data and b"\x1b" not in data
    info = subprocess.run([pdfinfo, str(path)], capture_output=True, text=True, check=True)
    assert "Gutschrift Ü (1)" in info.stdout
    assert re.search(r"^Pages:\s+1$", info.stdout, re.M)
    assert re.search(r"^PDF version:\s+1\.4$", info.stdout, re.M)
    assert "A4" in info.stdout
