"""End to end through the command line: demo and folder sources into folder targets."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from fixtures.cli import command, run_cli, write_config

TEMPLATE_RE = re.compile(
    r"^[a-z]+/\d{4}/\d{4}-\d{2}-\d{2}_(incoming_invoice|sales_invoice|credit_note|receipt|"
    r"payment_receipt|statement|misc)_[A-Za-z0-9-]+\.pdf$"
)


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def demo_config(tmp_path: Path, count: int, sidecar: bool = True, fsync: bool = True) -> Path:
    return write_config(
        tmp_path / "invoicesync.yaml",
        f"""
version: 1
timezone: Europe/Berlin
state: ./state
companies: [{{id: acme}}, {{id: telekom}}, {{id: officeplus}}, {{id: cloudhost}}, {{id: railways}}]
sources:
  - {{id: demo, type: demo, options: {{count: {count}, seed: 7}}}}
exports:
  - id: archive
    type: folder
    options: {{path: ./out, sidecar: {str(sidecar).lower()}, fsync: {str(fsync).lower()}}}
""",
    )


def test_demo_to_folder_exports_every_document_with_template_names(tmp_path: Path) -> None:
    result = run_cli("sync", config=demo_config(tmp_path, 30))
    assert result.returncode == 0, result.stderr
    out = files(tmp_path / "out")
    pdfs = sorted(n for n in out if n.endswith(".pdf"))
    assert len(pdfs) == 30
    for name in pdfs:
        assert TEMPLATE_RE.match(name), name
        assert out[name].startswith(b"%PDF-")
        meta = json.loads(out[name + ".json"])
        assert name.startswith(f"{meta['company']}/") and meta["number"] in name
    assert len(result.events("document.exported")) == 30
    finished = result.events("export.finished")[0]
    assert finished["exported"] == 30 and "duration_s" in finished
    # Logs go to stderr, the human summary to stdout.
    assert "archive: 30 exported" in result.stdout


def test_demo_without_sidecars_writes_only_documents(tmp_path: Path) -> None:
    assert run_cli("sync", config=demo_config(tmp_path, 5, sidecar=False)).returncode == 0
    assert all(n.endswith(".pdf") for n in files(tmp_path / "out"))


def folder_config(tmp_path: Path, template: str = "{company}/{number}.{ext}") -> Path:
    return write_config(
        tmp_path / "invoicesync.yaml",
        f"""
version: 1
timezone: Europe/Berlin
state: ./state
companies: [{{id: acme}}, {{id: beta}}]
sources:
  - {{id: inbox, type: folder, options: {{path: ./inbox, company: acme}}}}
exports:
  - id: out
    type: folder
    filename: "{template}"
    options: {{path: ./out, sidecar: true}}
""",
    )


def put(inbox: Path, name: str, content: bytes, sidecar: dict | None = None) -> None:
    path = inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))


def test_folder_to_folder_metadata_revisions_and_new_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    put(
        inbox,
        "a.pdf",
        b"%PDF-a1",
        {
            "number": "A-1",
            "type": "incoming_invoice",
            "document_date": "2026-01-31",
            "gross_amount": "119.00",
            "currency": "EUR",
            "tags": ["Travel"],
        },
    )
    put(inbox, "sub/b.pdf", b"%PDF-b1", {"number": "B-1", "company": "beta"})
    config = folder_config(tmp_path)

    first = run_cli("sync", config=config)
    assert first.returncode == 0, first.stderr
    out = files(tmp_path / "out")
    assert set(out) == {"acme/A-1.pdf", "acme/A-1.pdf.json", "beta/B-1.pdf", "beta/B-1.pdf.json"}
    meta = json.loads(out["acme/A-1.pdf.json"])
    assert meta["gross_amount"] == "119.00" and meta["currency"] == "EUR"
    assert meta["document_date"] == "2026-01-31" and meta["tags"] == ["Travel"]
    assert meta["id"] == "inbox/a.pdf"

    second = run_cli("sync", config=config)
    assert second.returncode == 0
    assert second.events("document.exported") == []
    assert files(tmp_path / "out") == out

    put(inbox, "a.pdf", b"%PDF-a2")  # new content, same sidecar
    put(inbox, "c.pdf", b"%PDF-c1", {"number": "C-1"})
    third = run_cli("sync", config=config)
    assert third.returncode == 0, third.stderr
    out = files(tmp_path / "out")
    assert out["acme/A-1.pdf"] == b"%PDF-a2"
    assert out["acme/C-1.pdf"] == b"%PDF-c1"
    assert sorted(e["document"] for e in third.events("document.exported")) == [
        "inbox/a.pdf",
        "inbox/c.pdf",
    ]


def test_hostile_sidecar_values_stay_inside_the_root(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    put(inbox, "evil.pdf", b"%PDF-evil", {"number": "../../etc/passwd"})
    put(inbox, "nul.pdf", b"%PDF-nul", {"number": "a\u0000b"})
    put(inbox, "long.pdf", b"%PDF-long", {"company": "x" * 1000, "number": "L"})
    put(inbox, "dots.pdf", b"%PDF-dots", {"number": "..", "company": "..."})
    result = run_cli("sync", config=folder_config(tmp_path))
    assert result.returncode == 1  # the NUL sidecar was skipped with an error
    failed = result.events("document.failed")
    assert [e["document"] for e in failed] == ["inbox/nul.pdf"]
    assert "sidecar nul.json: number" in failed[0]["reason"] and "NUL" in failed[0]["reason"]
    root = (tmp_path / "out").resolve()
    written = [p for p in root.rglob("*") if p.is_file()]
    assert len([p for p in written if p.suffix == ".pdf"]) == 3
    for path in written:
        assert path.resolve().is_relative_to(root)
        assert all(len(part.encode()) <= 255 for part in path.relative_to(root).parts)
        assert not any(part.startswith(".") for part in path.relative_to(root).parts)
    assert not (tmp_path / "etc").exists()


def test_template_with_attribute_access_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli("check-config", config=folder_config(tmp_path, "{number.__class__}"))
    assert result.returncode == 2
    assert re.search(
        r"invoicesync\.yaml:1[0-9]: exports\[0\]\.filename: placeholder "
        r"\{number\.__class__\} is not allowed",
        result.stderr,
    ), result.stderr


def test_kill_9_during_a_large_sync_then_sync_again_converges(tmp_path: Path) -> None:
    count = 5000
    # fsync protects against power loss, not against a killed process (the page
    # cache survives kill -9), so it is off here to keep the test quick.
    config = demo_config(tmp_path, count, sidecar=False, fsync=False)
    out = tmp_path / "out"
    argv = [*command(), "--config", str(config), "--log-format", "json", "sync"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "INVOICESYNC_PLUGINS": ""},
    )
    deadline = time.monotonic() + 240
    try:
        # Kill once the export is well under way (not before it started).
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and sum(1 for _ in out.rglob("*.pdf")) >= 300:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the sync finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = sum(1 for _ in out.rglob("*.pdf"))
    assert 0 < before < count

    again = run_cli("sync", config=config, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in written if ".invoicesync-tmp-" in p.name]
    names = sorted(p.relative_to(out).as_posix() for p in written)
    assert len(names) == count  # every document exactly once, no `_sha8` twins

    db = sqlite3.connect(tmp_path / "state" / "catalog.sqlite3")
    rows = db.execute("SELECT state, remote_name FROM ledger WHERE account='archive'").fetchall()
    db.close()
    assert len(rows) == count and {state for state, _ in rows} == {"exported"}
    assert sorted(name for _, name in rows) == names
