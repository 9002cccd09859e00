"""Data is never markup (issue 10 item 8).

Company names, file names, currencies and error texts come from documents and
servers; printed through rich they must appear verbatim, never be parsed as
rich markup (a `[/bold]` used to end `documents`, `explain` and `fetch` with a
MarkupError traceback, and `[red]` silently restyled the output).
"""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.cli import run_cli, write_config

HOSTILE_COMPANY = "[/bold] :warning:"
HOSTILE_NUMBER = "[bold red]N-1[/]"


def _setup(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    (inbox / "a[").mkdir(parents=True)
    # The document id is inbox/a[/]b.pdf: a folder "a[" holding "]b.pdf".
    (inbox / "a[" / "]b.pdf").write_bytes(b"%PDF-1.4 hostile name")
    (inbox / "a[" / "]b.json").write_text(
        json.dumps(
            {"company": HOSTILE_COMPANY, "number": HOSTILE_NUMBER, "currency": "EUR"}
        ),
        encoding="utf-8",
    )
    return write_config(tmp_path / "invoicesync.yaml", """version: 1
state: ./state
sources:
  - id: inbox
    type: folder
    options: {path: ./inbox}
  - id: gone
    type: folder
    options: {path: "./missing[/]folder[/bold]"}
exports:
  - id: out
    type: folder
    options: {path: ./out}
""")


def _no_crash(result: object) -> None:
    text = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in text and "MarkupError" not in text, text


def test_hostile_names_print_verbatim_in_fetch_documents_and_explain(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    fetched = run_cli("fetch", config=config, cwd=tmp_path)
    _no_crash(fetched)
    assert fetched.returncode == 1  # the "gone" source failed, and says where
    assert "inbox: 1 new" in fetched.stdout
    assert "missing[/]folder[/bold]" in fetched.stdout

    docs = run_cli("documents", config=config, cwd=tmp_path)
    _no_crash(docs)
    assert docs.returncode == 0
    assert "inbox/a[/]b.pdf" in docs.stdout
    assert HOSTILE_COMPANY in docs.stdout

    explained = run_cli("explain", "out", "inbox/a[/]b.pdf", config=config, cwd=tmp_path)
    _no_crash(explained)
    assert explained.returncode == 0
    assert "inbox/a[/]b.pdf on account out" in explained.stdout

    synced = run_cli("sync", "out", "--no-fetch", config=config, cwd=tmp_path)
    _no_crash(synced)
    assert synced.returncode == 0
    explained = run_cli("explain", "out", "inbox/a[/]b.pdf", config=config, cwd=tmp_path)
    _no_crash(explained)
    assert "already exported" in explained.stdout

    status = run_cli("status", config=config, cwd=tmp_path)
    _no_crash(status)
    assert status.returncode == 0
