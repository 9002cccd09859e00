"""One bad document never ends a built-in source's run (issue 10 item 2).

Through the real CLI against the real test portal: an absurd amount is that
document's clear failure (naming the item and the field) and the other
documents import and export. In process: an unexpected error while handling
one item of http_portal, one mail of imap or one demo document becomes that
item's failure, and the run goes on.
"""

# Fixtures imported from their module are "redefined" as test arguments.

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures.cli import run_cli, write_config
from fixtures.dovecot import Mailbox, make_mail
from fixtures.portal_server import Portal
from fixtures.source_helpers import pdf, run_fetch
from invoicesync.connectors_builtin.demo import source as demo_source
from invoicesync.connectors_builtin.http_portal import source as portal_source
from invoicesync.connectors_builtin.imap import source as imap_source
from invoicesync.plugins import ConnectorContext

pytestmark = pytest.mark.server


def portal_config(tmp_path: Path, portal: Portal) -> Path:
    return write_config(
        tmp_path / "invoicesync.yaml",
        f"""\
version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - id: portal
    type: http_portal
    options:
      base_url: {portal.url}/api
      list_path: /page/documents
      items_field: data
      pagination: {{style: page, size_param: per_page, page_size: 2}}
      download_url_field: download_url
      mapping: {{number: invoice_no, gross_amount: total.gross}}
exports:
  - id: archive
    type: folder
    filename: "{{number}}_{{gross_amount}}.{{ext}}"
    options: {{path: ./export}}
    restrictions:
      attributes: {{gross_amount: {{min: 0, max: 100000}}}}
""",
    )


def test_portal_amount_overflow_fails_only_its_document(portal: Portal, tmp_path: Path) -> None:
    for i, gross in ((1, "10.00"), (2, "1e999999999"), (3, "30.00")):
        portal.add(f"D{i}", pdf(f"d{i}"), invoice_no=f"R-{i}", total={"gross": gross})
    config = portal_config(tmp_path, portal)
    for _run in range(2):
        result = run_cli("sync", config=config)
        assert result.returncode == 1, result.stderr
        [failed] = result.events("document.failed")
        assert failed["document"] == "portal/D2"
        assert failed["reason"] == (
            "item 'D2': field gross_amount (total.gross): "
            "amount is too large (at most 15 digits before the point)"
        )
        assert not result.events("connector.error"), result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    names = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert names == ["R-1_10.00.pdf", "R-3_30.00.pdf"]


def make_portal_source(portal: Portal, tmp_path: Path) -> portal_source.HttpPortalSource:
    options = portal_source.HttpPortalOptions.model_validate(
        {
            "base_url": portal.url + "/api",
            "list_path": "/page/documents",
            "pagination": {"style": "page", "size_param": "per_page", "page_size": 2},
            "items_field": "data",
            "download_url_field": "download_url",
            "mapping": {"number": "invoice_no"},
        }
    )
    return portal_source.HttpPortalSource(
        "portal", options, ConnectorContext("portal", tmp_path / "state")
    )


def test_portal_unexpected_error_on_one_item_is_that_items_failure(
    portal: Portal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in (1, 2, 3):
        portal.add(f"D{i}", pdf(f"d{i}"), invoice_no=f"R-{i}")
    real = portal_source.safe_filename

    def safe_filename(name: Any, *args: Any) -> str:
        if args and args[0] == "D2":
            raise RuntimeError("surprise in D2")
        return real(name, *args)

    monkeypatch.setattr(portal_source, "safe_filename", safe_filename)
    run = run_fetch(make_portal_source(portal, tmp_path))
    assert run.ids == ["D1", "D3"]
    [skipped] = run.skipped
    assert skipped.external_id == "D2"
    assert skipped.reason == "item 'D2': unexpected error: RuntimeError: surprise in D2"


def test_demo_document_that_cannot_be_made_is_that_documents_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = demo_source.generate

    def generate(index: int, *args: Any) -> Any:
        if index == 1:
            raise OverflowError("date value out of range")
        return real(index, *args)

    monkeypatch.setattr(demo_source, "generate", generate)
    options = demo_source.DemoOptions(count=3, seed=1)
    source = demo_source.DemoSource("demo", options, ConnectorContext("demo", tmp_path))
    run = run_fetch(source)
    assert run.ids == ["inv-000001", "inv-000003"]
    [skipped] = run.skipped
    assert skipped.external_id == "inv-000002"
    assert skipped.reason == "cannot generate: OverflowError: date value out of range"


def test_imap_mail_that_trips_the_source_is_that_mails_failure(
    mailbox: Mailbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = [
        mailbox.append(
            make_mail(f"Invoice {n}", attachments=[(f"{n}.pdf", "application/pdf", pdf(n))])
        )
        for n in ("one", "two", "three")
    ]
    real = imap_source.ImapSource._metadata

    def metadata(self: imap_source.ImapSource, msg: Any, folder: str) -> Any:
        if "two" in str(msg["Subject"]):
            raise LookupError("unknown charset x-surprise")
        return real(self, msg, folder)

    monkeypatch.setattr(imap_source.ImapSource, "_metadata", metadata)
    server = mailbox.server
    options = imap_source.ImapOptions.model_validate(
        {
            "host": server.host,
            "port": server.imaps_port,
            "username": mailbox.username,
            "password": mailbox.password,
            "ca_file": str(server.ca_file),
            "timeout": 20,
            "after_import": "flag",
        }
    )
    source = imap_source.ImapSource("mail", options, ConnectorContext("mail", tmp_path / "st"))
    run = run_fetch(source)
    assert [s.filename for s in run.stored] == ["one.pdf", "three.pdf"]
    [skipped] = run.skipped
    assert skipped.reason.startswith(f"mail UID {uids[1]} in 'INBOX': unexpected error: ")
    assert "LookupError: unknown charset x-surprise; left in the mailbox" in skipped.reason
    # Only the imported mails are flagged; the failed one is left as it was.
    assert ["\\Flagged" in mailbox.flags(uid) for uid in uids] == [True, False, True]
