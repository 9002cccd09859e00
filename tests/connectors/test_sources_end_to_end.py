"""imap and http_portal end to end: the real CLI, a real server, a folder target.

Each test writes a configuration whose secret comes from ``env:`` or
``credential:``, runs ``invoicesync sync`` as a subprocess, and checks the
exported files, a second no-op run, and that the secret appears in no output
(logs, status, documents, explain, errors).
"""

# Fixtures imported from their module are "redefined" as test arguments.

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.dovecot import Mailbox, make_mail
from fixtures.portal_server import Portal
from fixtures.source_helpers import pdf

pytestmark = pytest.mark.server


def cli(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoicesync.daemon.cli", "--config", str(config),
         "--log-format", "json", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )  # fmt: skip


def exported(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".json")
    }


def outputs_without(secret: str, *runs: subprocess.CompletedProcess[str]) -> None:
    for run in runs:
        assert secret not in run.stdout, run.args
        assert secret not in run.stderr, run.args


def test_imap_into_folder_target(mailbox: Mailbox, tmp_path: Path) -> None:
    a, b, c = pdf("e2e-a"), pdf("e2e-b"), pdf("e2e-c")
    uid1 = mailbox.append(
        make_mail(
            "Invoice 4711",
            attachments=[
                ("inv-4711.pdf", "application/pdf", a),
                ("inv-4712.pdf", "application/pdf", b),
            ],
        )
    )
    mailbox.append(make_mail("hello, no attachment"))
    mailbox.append(make_mail("Receipt", attachments=[("../../receipt.pdf", "application/pdf", c)]))
    server = mailbox.server
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        f"""\
version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - id: mail
    type: imap
    options:
      host: 127.0.0.1
      port: {server.imaps_port}
      username: {mailbox.username}
      password: env:E2E_IMAP_PASSWORD
      ca_file: {server.ca_file}
      after_import: flag
exports:
  - id: archive
    type: folder
    filename: "{{source}}/{{filename}}.{{ext}}"
    options: {{path: ./export, sidecar: true}}
""",
        encoding="utf-8",
    )
    env = {"E2E_IMAP_PASSWORD": mailbox.password}
    first = cli(config, "sync", env=env)
    assert first.returncode == 0, first.stderr
    assert exported(tmp_path / "export") == {
        "mail/inv-4711.pdf": a,
        "mail/inv-4712.pdf": b,
        "mail/receipt.pdf": c,
    }
    assert "\\Flagged" in mailbox.flags(uid1)
    events = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    imported = [e for e in events if e.get("event") == "document.imported"]
    assert len(imported) == 3

    second = cli(config, "sync", env=env)
    assert second.returncode == 0, second.stderr
    assert len(exported(tmp_path / "export")) == 3
    assert '"document.imported"' not in second.stderr

    docs = cli(config, "documents", "--json", env=env)
    assert docs.returncode == 0, docs.stderr
    ids = [json.loads(line)["id"] for line in docs.stdout.splitlines()]
    assert len(ids) == 3 and all(i.startswith("mail/mid-") for i in ids)
    explain = cli(config, "explain", "archive", ids[0], env=env)
    status = cli(config, "status", env=env)
    assert explain.returncode == 0 and status.returncode == 0

    # The wrong password: the run fails, and says so without the secret.
    wrong = "Wr0ng-imap-e2e-secret-4411"
    bad = cli(config, "sync", env={"E2E_IMAP_PASSWORD": wrong})
    assert bad.returncode == 1
    assert "refused" in bad.stderr
    check = cli(config, "check-config", "--connect", env={"E2E_IMAP_PASSWORD": wrong})
    assert check.returncode != 0
    outputs_without(mailbox.password, first, second, docs, explain, status)
    outputs_without(wrong, bad, check)


def test_http_portal_into_folder_target(portal: Portal, tmp_path: Path) -> None:
    token = "e2e-portal-token-9c1f07"
    portal.auth = ("bearer", token)
    contents = {}
    for i in (1, 2, 3):
        content = pdf(f"portal-e2e-{i}")
        contents[f"R-{i}"] = content
        portal.add(
            f"D{i}",
            content,
            invoice_no=f"R-{i}",
            date=f"2026-0{i}-15",
            total={"gross": f"{i}0.00", "currency": "EUR"},
            supplier="acme",
            updated_at=f"2026-04-0{i}",
        )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "portal-token").write_text(token + "\n", encoding="utf-8")
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        f"""\
version: 1
timezone: Europe/Berlin
state: ./state
companies: [{{id: acme}}]
sources:
  - id: portal
    type: http_portal
    options:
      base_url: {portal.url}/api
      list_path: /page/documents
      items_field: data
      pagination: {{style: page, size_param: per_page, page_size: 2}}
      download_url_field: download_url
      auth: {{type: bearer, token: "credential:portal-token"}}
      since_param: since
      since_field: updated_at
      mapping:
        number: invoice_no
        document_date: date
        gross_amount: total.gross
        currency: total.currency
        company: supplier
        type: {{field: kind, map: {{}}, default: incoming_invoice}}
exports:
  - id: archive
    type: folder
    filename: "{{company}}/{{document_date:%Y-%m}}_{{number}}.{{ext}}"
    options: {{path: ./export}}
""",
        encoding="utf-8",
    )
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    first = cli(config, "sync", env=env)
    assert first.returncode == 0, first.stderr
    assert exported(tmp_path / "export") == {
        "acme/2026-01_R-1.pdf": contents["R-1"],
        "acme/2026-02_R-2.pdf": contents["R-2"],
        "acme/2026-03_R-3.pdf": contents["R-3"],
    }
    portal.add("D4", pdf("portal-e2e-4"), invoice_no="R-4", date="2026-04-15",
               supplier="acme", updated_at="2026-04-04")  # fmt: skip
    second = cli(config, "sync", env=env)
    assert second.returncode == 0, second.stderr
    assert set(exported(tmp_path / "export")) == {
        "acme/2026-01_R-1.pdf",
        "acme/2026-02_R-2.pdf",
        "acme/2026-03_R-3.pdf",
        "acme/2026-04_R-4.pdf",
    }
    # The second run asked only for what changed since the first.
    assert portal.requests_to("/api/page/documents")[-1].query.get("since") == "2026-04-03"
    status = cli(config, "status", env=env)
    explain = cli(config, "explain", "archive", "portal/D1", env=env)
    assert status.returncode == 0 and explain.returncode == 0, explain.stderr

    (credentials / "portal-token").write_text("wrong-e2e-portal-token-5521\n", encoding="utf-8")
    bad = cli(config, "sync", env=env)
    assert bad.returncode == 1
    assert "refused the credentials" in bad.stderr
    outputs_without(token, first, second, status, explain)
    outputs_without("wrong-e2e-portal-token-5521", bad)
