"""One bad document never ends a folder source's run (issue 10 item 2), through the CLI."""

from __future__ import annotations

import mimetypes
from pathlib import Path

import pytest
from fixtures.cli import run_cli, write_config
from invoicesync.connectors_builtin.folder import FolderSource, FolderSourceOptions
from invoicesync.plugins import ConnectorContext, SkippedDocument, SourceDocument

CONFIG = """version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - id: inbox
    type: folder
    options: {path: ./inbox}
exports: []
"""


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ('"1e999999999"', "gross_amount: amount is too large (at most 15 digits before the point)"),
        ("1e999999999", "gross_amount: amount is too large (at most 15 digits before the point)"),
        ('"-1E+1000000"', "gross_amount: amount is too large (at most 15 digits before the point)"),
        ('"1e-999999999"', "gross_amount: at most 6 decimal places"),
    ],
)
def test_an_absurd_amount_fails_its_document_and_every_run_goes_on(
    tmp_path: Path, amount: str, expected: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.pdf").write_bytes(b"%PDF-1.4 a")
    (inbox / "a.json").write_text('{"gross_amount": ' + amount + "}")
    for name in ("b.pdf", "c.pdf"):
        (inbox / name).write_bytes(b"%PDF-1.4 " + name.encode())
    config = write_config(tmp_path / "invoicesync.yaml", CONFIG)
    for _run in range(2):  # it used to end this run, and every later one
        result = run_cli("fetch", config=config)
        assert result.returncode == 1, result.stderr
        [failed] = result.events("document.failed")
        assert failed["document"] == "inbox/a.pdf"
        assert failed["reason"] == f"sidecar a.json: {expected}"
        assert not result.events("connector.error"), result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    listing = run_cli("documents", config=config)
    assert "inbox/b.pdf" in listing.stdout and "inbox/c.pdf" in listing.stdout


def test_an_unexpected_error_on_one_file_is_that_files_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.pdf", "b.pdf", "c.pdf"):
        (inbox / name).write_bytes(b"%PDF-1.4")
    real = mimetypes.guess_type

    def guess_type(name: str, strict: bool = True) -> tuple[str | None, str | None]:
        if name == "b.pdf":
            raise RuntimeError("a library surprised us")
        return real(name, strict)

    monkeypatch.setattr(mimetypes, "guess_type", guess_type)
    source = FolderSource(
        "inbox",
        FolderSourceOptions(path=inbox),
        ConnectorContext("inbox", tmp_path / "state"),
    )
    items = list(source.fetch(None))
    assert [i.external_id for i in items if isinstance(i, SourceDocument)] == ["a.pdf", "c.pdf"]
    [skipped] = [i for i in items if isinstance(i, SkippedDocument)]
    assert skipped.external_id == "b.pdf"
    assert skipped.reason == "b.pdf: unexpected error: RuntimeError: a library surprised us"
