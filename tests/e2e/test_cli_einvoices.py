"""E-invoices end to end through the CLI: fields from the XML drive restrictions
and names, the same invoice from two sources goes once, re-extraction widens."""

from __future__ import annotations

import shutil
from pathlib import Path

from fixtures.cli import run_cli, write_config

DATA = Path(__file__).resolve().parents[1] / "data" / "einvoices"

INBOX = [
    "facturx-pkg_invoice_EN16931.pdf",  # Factur-X PDF: invoice F20260023 of 2026-01-31
    "django-xrechnung_hybrid.pdf",  # ZUGFeRD 2.3 PDF: invoice 471102 of 2024-11-15
    "django-xrechnung_no-xml.pdf",  # a plain PDF
    "erechnung-core_de-standard-19.xml",  # XRechnung UBL: invoice RE-2026-1001 of 2026-07-08
    "django-xrechnung_ubl-credit.xml",  # XRechnung UBL credit note INV-0001 of 2026-09-09
    "facturx-pkg_zugferd-basic.xml",  # ZUGFeRD 1.0: invoice 471102 of 2013-03-05
]

CONFIG = """version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - {{id: inbox, type: folder, options: {{path: ./inbox}}{extract}}}
  - {{id: mail, type: folder, options: {{path: ./mail}}{extract}}}
exports:
  - id: q
    type: folder
    filename: "{{number|filename}}.{{ext}}"
    options: {{path: ./q}}
    restrictions:
      period: {{between: [2026-01-01, 2026-12-31]}}
      attributes: {{types: [incoming_invoice]}}
  - id: all
    type: folder
    options: {{path: ./all}}
    filename: "{{source}}/{{number|filename}}.{{ext}}"
"""


def setup(tmp_path: Path, extract: str = "") -> Path:
    inbox = tmp_path / "inbox"
    mail = tmp_path / "mail"
    inbox.mkdir()
    mail.mkdir()
    for name in INBOX:
        shutil.copy(DATA / name, inbox / name)
    # The same Factur-X PDF by mail (same bytes), and the same XRechnung
    # re-serialised (other bytes, same seller VAT id, number, total, currency).
    shutil.copy(DATA / "facturx-pkg_invoice_EN16931.pdf", mail / "Rechnung.pdf")
    xml = (DATA / "erechnung-core_de-standard-19.xml").read_bytes()
    (mail / "re-1001.xml").write_bytes(xml + b"\n<!-- forwarded -->\n")
    return write_config(tmp_path / "invoicesync.yaml", CONFIG.format(extract=extract))


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_period_and_type_restrictions_use_the_e_invoice_fields(tmp_path: Path) -> None:
    config = setup(tmp_path)
    result = run_cli("sync", config=config)
    assert result.returncode == 0, result.stderr
    assert files(tmp_path / "q") == {"F20260023.pdf", "RE-2026-1001.xml"}
    # Every invoice once: the mailed copies are duplicates and skipped; the
    # plain PDF keeps its own name (the {number|filename} fallback).
    assert files(tmp_path / "all") == {
        "inbox/F20260023.pdf",
        "inbox/471102.pdf",
        "inbox/django-xrechnung_no-xml.pdf",
        "inbox/RE-2026-1001.xml",
        "inbox/INV-0001.xml",
        "inbox/471102.xml",
    }
    duplicates = {e["document"]: e for e in result.events("document.duplicate")}
    assert set(duplicates) == {"mail/Rechnung.pdf", "mail/re-1001.xml"}
    assert duplicates["mail/Rechnung.pdf"]["duplicate_of"] == (
        "inbox/facturx-pkg_invoice_EN16931.pdf"
    )
    assert "same content (SHA-256)" in duplicates["mail/Rechnung.pdf"]["reason"]
    assert "same seller, number" in duplicates["mail/re-1001.xml"]["reason"]

    explained = run_cli("explain", "q", "inbox/facturx-pkg_invoice_EN16931.pdf", config=config)
    assert explained.returncode == 0, explained.stderr
    assert "document_date 2026-01-31 (Factur-X XML, BT-2)" in explained.stdout
    assert "number F20260023 (Factur-X XML, BT-1)" in explained.stdout
    assert "einvoice_valid true" in explained.stdout
    why = run_cli("explain", "all", "mail/Rechnung.pdf", config=config)
    assert "duplicates: duplicate of inbox/facturx-pkg_invoice_EN16931.pdf" in why.stdout
    assert "do not export" in why.stdout

    listed = run_cli("documents", "--duplicates", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    assert {line.split('"id": "')[1].split('"')[0] for line in listed.stdout.splitlines()} == {
        "mail/Rechnung.pdf",
        "mail/re-1001.xml",
    }
    shown = run_cli("documents", "--provenance", config=config)
    assert "fields.seller_vat_id DE123456789 (XRechnung UBL, BT-31)" in shown.stdout


def test_a_broken_e_invoice_is_imported_with_a_warning(tmp_path: Path) -> None:
    config = setup(tmp_path)
    shutil.copy(DATA / "django-xrechnung_malformed-embedded.pdf", tmp_path / "inbox" / "bad.pdf")
    (tmp_path / "inbox" / "other.xml").write_bytes(b"<html/>")
    result = run_cli("sync", "all", config=config)
    assert result.returncode == 0, result.stderr
    warnings = {e["document"]: e for e in result.events("document.extract_failed")}
    assert set(warnings) == {"inbox/bad.pdf", "inbox/other.xml"}
    assert warnings["inbox/bad.pdf"]["extractor"] == "einvoice"
    assert "embedded factur-x.xml: not well-formed XML" in warnings["inbox/bad.pdf"]["reason"]
    assert warnings["inbox/bad.pdf"]["level"] == "warning"
    assert {"inbox/bad.pdf", "inbox/other.xml"} <= files(tmp_path / "all")


def test_reextraction_over_an_older_catalog_widens_the_export(tmp_path: Path) -> None:
    config = setup(tmp_path, extract=", extract: []")
    first = run_cli("sync", config=config)
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "q").exists() or files(tmp_path / "q") == set()
    config.write_text(CONFIG.format(extract=""), encoding="utf-8")
    again = run_cli("reextract", config=config)
    assert again.returncode == 0, again.stderr
    # Every e-invoice (5 in the inbox, 2 by mail); the plain PDF is unchanged.
    assert again.stdout.startswith("7 updated, 1 unchanged, 0 failed"), again.stdout
    second = run_cli("sync", "--no-fetch", config=config)
    assert second.returncode == 0, second.stderr
    assert files(tmp_path / "q") == {"F20260023.pdf", "RE-2026-1001.xml"}
