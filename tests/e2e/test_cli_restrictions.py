"""Restrictions through the command line: dry runs that write nothing, explain,
and configuration changes between syncs (widening exports, narrowing keeps)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fixtures.cli import run_cli, write_config

HEAD = """version: 1
timezone: Europe/Berlin
state: ./state
companies: [{id: acme}, {id: beta}]
sources:
  - {id: inbox, type: folder, options: {path: ./inbox, company: acme}}
exports:
  - id: out
    type: folder
    filename: "{document_date:%Y-%m}/{number}.{ext}"
    options: {path: ./out}
"""

DOCS = {
    "jan.pdf": {
        "number": "JAN",
        "document_date": "2026-01-15",
        "type": "incoming_invoice",
        "payment_status": "paid",
        "tags": ["Travel"],
    },
    "mar.pdf": {
        "number": "MAR",
        "document_date": "2026-03-31",
        "type": "incoming_invoice",
        "payment_status": "unpaid",
    },
    "may.pdf": {
        "number": "MAY",
        "document_date": "2026-05-02",
        "type": "credit_note",
        "payment_status": "paid",
        "company": "beta",
    },
    "nodate.pdf": {"number": "NODATE", "type": "receipt"},
}


def make_inbox(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, meta in DOCS.items():
        (inbox / name).write_bytes(f"%PDF-{name}".encode())
        (inbox / name).with_suffix(".json").write_text(json.dumps(meta))


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its SHA-256 (the catalog, blobs and target)."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def exported(tmp_path: Path) -> set[str]:
    return set(snapshot(tmp_path / "out"))


def test_dry_run_prints_the_plan_and_changes_nothing_byte_for_byte(tmp_path: Path) -> None:
    make_inbox(tmp_path)
    config = write_config(
        tmp_path / "invoicesync.yaml",
        HEAD
        + """    restrictions:
      period: {since: 2026-03-01}
""",
    )
    # A first real sync of an older state, so there is a catalog and ledger to protect.
    assert run_cli("sync", config=config).returncode == 0
    (tmp_path / "inbox" / "new.pdf").write_bytes(b"%PDF-new")
    (tmp_path / "inbox" / "new.json").write_text('{"number": "NEW", "document_date": "2026-06-01"}')
    before = snapshot(tmp_path)

    result = run_cli("sync", "--dry-run", config=config)
    assert result.returncode == 0, result.stderr
    assert snapshot(tmp_path) == before  # catalog, ledger, blobs and target unchanged
    plan = [line.split("\t") for line in result.stdout.splitlines() if line.startswith("out\t")]
    assert [(p[1], p[2]) for p in plan] == [("inbox/new.pdf", "-> 2026-06/NEW.pdf")]
    assert "new; passes period" in plan[0][3]
    # The summary counts what each check excluded (January and the undated one).
    assert "2 excluded (period: 2)" in result.stdout


def test_explain_shows_each_check_and_the_export_history(tmp_path: Path) -> None:
    make_inbox(tmp_path)
    config = write_config(
        tmp_path / "invoicesync.yaml",
        HEAD
        + """    restrictions:
      origins: {mode: include, companies: [acme]}
      attributes: {payment_status: [paid], tags: {any_of: [travel]}}
""",
    )
    assert run_cli("sync", config=config).returncode == 0
    jan = run_cli("explain", "out", "inbox/jan.pdf", config=config)
    assert jan.returncode == 0, jan.stderr
    assert "✓ origins" in jan.stdout and "✓ attributes.payment_status" in jan.stdout
    assert "verdict: export" in jan.stdout
    assert "already exported on" in jan.stdout and "2026-01/JAN.pdf" in jan.stdout
    may = run_cli("explain", "out", "inbox/may.pdf", config=config)
    assert "✗ origins" in may.stdout and "verdict: do not export" in may.stdout
    missing = run_cli("explain", "out", "inbox/nope.pdf", config=config)
    assert missing.returncode == 2 and "no document" in missing.stderr


def test_changing_restrictions_between_syncs_widens_and_never_deletes(tmp_path: Path) -> None:
    make_inbox(tmp_path)
    narrow = (
        HEAD
        + """    restrictions:
      period: {relative_to: document_date, last: 2m}
"""
    )
    config = write_config(tmp_path / "invoicesync.yaml", narrow)
    now = "--now=2026-05-31T12:00:00+02:00"
    assert run_cli(now, "sync", config=config).returncode == 0
    # last: 2m from 31 May is 31 March ... 31 May: March 31st and May 2nd.
    assert exported(tmp_path) == {"2026-03/MAR.pdf", "2026-05/MAY.pdf"}

    wide = (
        HEAD
        + """    restrictions:
      period: {relative_to: document_date, since: 2026-01-01, on_missing_date: include}
"""
    )
    write_config(tmp_path / "invoicesync.yaml", wide)
    result = run_cli(now, "sync", config=config)
    assert result.returncode == 0
    assert sorted(e["document"] for e in result.events("document.exported")) == [
        "inbox/jan.pdf",
        "inbox/nodate.pdf",
    ]
    assert exported(tmp_path) == {
        "2026-01/JAN.pdf",
        "2026-03/MAR.pdf",
        "2026-05/MAY.pdf",
        "unknown/NODATE.pdf",
    }

    only_credit_notes = (
        HEAD
        + """    restrictions:
      attributes: {types: [credit_note]}
"""
    )
    write_config(tmp_path / "invoicesync.yaml", only_credit_notes)
    result = run_cli(now, "sync", config=config)
    assert result.returncode == 0 and result.events("document.exported") == []
    assert len(exported(tmp_path)) == 4  # narrowing deletes nothing
