"""The imap source against a real Dovecot (tests/fixtures/dovecot.py)."""

# Fixtures imported from their module are "redefined" as test arguments.

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures.dovecot import Mailbox, make_mail
from fixtures.source_helpers import RecordingLogger, commit, pdf, run_fetch
from invoicesync.connectors_builtin._filenames import safe_filename
from invoicesync.connectors_builtin.imap.source import ImapOptions, ImapSource, imap_utf7
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import ConnectorContext, ConnectorError, TransientError
from pydantic import ValidationError

pytestmark = pytest.mark.server


def make_source(
    mailbox: Mailbox, tmp_path: Path, logger: RecordingLogger | None = None, **overrides: Any
) -> ImapSource:
    server = mailbox.server
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.imaps_port,
        "username": mailbox.username,
        "password": mailbox.password,
        "ca_file": str(server.ca_file),
        "timeout": 20,
    }
    options.update(overrides)
    context = ConnectorContext(id="mail", state_dir=tmp_path / "state", logger=logger)
    return ImapSource("mail", ImapOptions.model_validate(options), context)


def test_registered_as_builtin() -> None:
    assert load_plugins(entry_points=False).source_type("imap") is ImapSource


def test_several_mails_and_attachments(mailbox: Mailbox, tmp_path: Path) -> None:
    a1, a2, b1 = pdf("a1"), pdf("a2"), pdf("b1")
    sent = datetime(2026, 2, 3, 10, 15, tzinfo=UTC)
    mailbox.append(
        make_mail(
            "Invoice 1001 and 1002",
            attachments=[
                ("inv-1001.pdf", "application/pdf", a1),
                ("inv-1002.pdf", "application/pdf", a2),
            ],
            sender="ACME Billing <billing@acme.example>",
            date=sent,
        )
    )
    mailbox.append(
        make_mail(
            "Receipt",
            attachments=[
                ("logo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"0" * 50),
                ("receipt.pdf", "application/octet-stream", b1),  # judged by its extension
            ],
        )
    )
    mailbox.append(make_mail("Just a note, no attachment"))

    source = make_source(mailbox, tmp_path)
    source.check()
    run = run_fetch(source)

    assert [s.filename for s in run.stored] == ["inv-1001.pdf", "inv-1002.pdf", "receipt.pdf"]
    assert [s.content for s in run.stored] == [a1, a2, b1]
    assert {s.media_type for s in run.stored} == {"application/pdf"}
    first = run.stored[0].doc.metadata
    assert first.fields["mail_from"] == "ACME Billing <billing@acme.example>"
    assert datetime.fromisoformat(first.fields["mail_date"]) == sent
    assert first.fields["mail_folder"] == "INBOX"
    assert first.note == "Invoice 1001 and 1002"
    assert first.document_date == date(2026, 2, 3)
    # Ids: stable mail key + part index + content hash, unique per attachment.
    assert len(set(run.ids)) == 3
    assert run.ids[0].split("/")[0] == run.ids[1].split("/")[0]
    assert run.ids[0].endswith("-" + hashlib.sha256(a1).hexdigest()[:8])
    # A checkpoint only on the last document of each mail.
    assert [s.doc.cursor is not None for s in run.stored] == [False, True, True]

    # Nothing new: the next fetch yields nothing; a new mail yields only itself.
    again = run_fetch(source, run.cursor)
    assert again.stored == []
    mailbox.append(make_mail("Late", attachments=[("late.pdf", "application/pdf", pdf("late"))]))
    later = run_fetch(source, again.cursor)
    assert [s.filename for s in later.stored] == ["late.pdf"]

    # The same mails fetched from scratch map to the same ids (stable).
    assert run_fetch(source).ids == run.ids + later.ids


def test_mail_without_attachments_advances_cursor(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.append(make_mail("no attachment 1"))
    mailbox.append(make_mail("no attachment 2"))
    source = make_source(mailbox, tmp_path)
    run = run_fetch(source)
    assert run.stored == []
    assert run.cursor is not None
    state = json.loads(run.cursor)["folders"]["INBOX"]
    assert state["uid"] == max(mailbox.uids())
    assert state["uidvalidity"] == mailbox.uidvalidity()


MALICIOUS = b"""\
From: "Evil" <evil@attacker.example>
To: accounts@firm.example
Subject: =?utf-8?q?Invoice=0A=1B[31m?=
Date: Tue, 03 Mar 2026 08:00:00 +0100
Message-ID: <evil-1@attacker.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XX"

--XX
Content-Type: text/plain

hello
--XX
Content-Type: application/pdf; name="../../etc/passwd.pdf"
Content-Disposition: attachment; filename="../../etc/passwd.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJSBvbmUK
--XX
Content-Type: application/pdf
Content-Disposition: attachment; filename="=?utf-8?q?..=2F..=2F.ssh=2Fauthorized=5Fkeys.pdf?="
Content-Transfer-Encoding: base64

JVBERi0xLjQKJSB0d28K
--XX
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''%E2%80%AEfdp.exe%00%0A..%5C..%5Cx.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQKJSB0aHJlZQo=
--XX
Content-Type: application/pdf
Content-Disposition: attachment; filename="..."
Content-Transfer-Encoding: base64

JVBERi0xLjQKJSBmb3VyCg==
--XX--
"""


def test_malicious_attachment_names(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.append(MALICIOUS.replace(b"\n", b"\r\n"))
    run = run_fetch(make_source(mailbox, tmp_path))
    names = [s.filename for s in run.stored]
    assert names == ["passwd.pdf", "authorized_keys.pdf", "x.pdf", "attachment-4.pdf"]
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert all(ch.isprintable() for ch in name)
    assert run.stored[0].content == b"%PDF-1.4\n% one\n"
    note = run.stored[0].doc.metadata.note
    assert note is not None and "\x1b" not in note and "\n" not in note


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("C:\\Users\\x\\invoice.pdf", "invoice.pdf"),
        ("..", "attachment-7.pdf"),
        ("", "attachment-7.pdf"),
        (None, "attachment-7.pdf"),
        ("a:b*c?.pdf", "a_b_c_.pdf"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_safe_filename(raw: str | None, expected: str) -> None:
    assert safe_filename(raw, 7, "application/pdf") == expected


def test_large_attachment_streamed_to_file(mailbox: Mailbox, tmp_path: Path) -> None:
    big = pdf("big", 20 * 1024 * 1024)
    mailbox.append(make_mail("Big scan", attachments=[("scan.pdf", "application/pdf", big)]))
    mailbox.append(make_mail("small", attachments=[("small.pdf", "application/pdf", pdf("s"))]))
    source = make_source(mailbox, tmp_path)
    run = run_fetch(source)
    assert [s.filename for s in run.stored] == ["scan.pdf", "small.pdf"]
    assert run.stored[0].was_path, "a 20 MB attachment must be handed over as a file"
    assert hashlib.sha256(run.stored[0].content).digest() == hashlib.sha256(big).digest()
    path = run.stored[0].doc.content
    assert isinstance(path, Path)
    assert path.is_relative_to(tmp_path / "state")
    assert not run.stored[1].was_path
    # Temporary files are gone once the fetch is over.
    assert list((tmp_path / "state" / "tmp").iterdir()) == []


def _seed(mailbox: Mailbox, n: int, folder: str = "INBOX") -> list[bytes]:
    contents = [pdf(f"{folder}-{i}") for i in range(n)]
    conn = mailbox.connect()
    try:
        for i, content in enumerate(contents):
            mail = make_mail(
                f"Invoice {i}", attachments=[(f"inv-{i}.pdf", "application/pdf", content)]
            )
            mailbox.append(mail, folder, conn=conn)
    finally:
        conn.logout()
    return contents


def test_abandoned_fetch_resumes_without_duplicates(mailbox: Mailbox, tmp_path: Path) -> None:
    contents = _seed(mailbox, 5)
    source = make_source(mailbox, tmp_path)
    first = run_fetch(source, limit=2)
    assert len(first.stored) == 2
    rest = run_fetch(source, first.checkpoints[-1])
    assert [s.content for s in first.stored + rest.stored] == contents
    assert not set(first.ids) & set(rest.ids)


def test_broken_connection_resumes_without_duplicates(mailbox: Mailbox, tmp_path: Path) -> None:
    contents = _seed(mailbox, 6)
    # flag makes the source talk to the server after each mail, so the broken
    # connection is noticed mid-fetch, not only at the end.
    source = make_source(mailbox, tmp_path, after_import="flag")
    from fixtures.source_helpers import FetchRun

    run = FetchRun()
    gen = source.fetch(None)
    for _ in range(3):
        commit(next(gen), run)
    assert source._conn is not None
    source._conn.shutdown()  # the network goes away
    with pytest.raises(TransientError, match="connection lost"):
        while True:
            commit(next(gen), run)
    assert len(run.stored) == 3
    resumed = run_fetch(source, run.checkpoints[-1])
    all_contents = [s.content for s in run.stored + resumed.stored]
    assert all_contents == contents
    assert len(set(run.ids + resumed.ids)) == 6


def test_uidvalidity_change_rescans_without_new_ids(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.create("Invoices")
    mails = [
        make_mail(f"Invoice {i}", attachments=[(f"{i}.pdf", "application/pdf", pdf(f"uv{i}"))])
        for i in range(3)
    ]
    for mail in mails:
        mailbox.append(mail, "Invoices")
    logger = RecordingLogger()
    source = make_source(mailbox, tmp_path, logger, folders=["Invoices"])
    first = run_fetch(source)
    old_validity = mailbox.uidvalidity("Invoices")

    # The mailbox is rebuilt (restored from a backup, migrated): same mails,
    # new UIDVALIDITY.
    mailbox.delete("Invoices")
    mailbox.create("Invoices")
    for mail in mails:
        mailbox.append(mail, "Invoices")
    assert mailbox.uidvalidity("Invoices") != old_validity

    second = run_fetch(source, first.cursor)
    assert "imap.uidvalidity_changed" in logger.names()
    assert second.ids == first.ids  # rescanned, but the same documents
    assert json.loads(second.cursor or "")["folders"]["Invoices"]["uidvalidity"] == (
        mailbox.uidvalidity("Invoices")
    )
    assert run_fetch(source, second.cursor).stored == []


def test_since_and_filters(mailbox: Mailbox, tmp_path: Path) -> None:
    old = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    new = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    mailbox.append(
        make_mail("old", attachments=[("invoice-old.pdf", "application/pdf", pdf("old"))]),
        internal_date=old,
    )
    mailbox.append(
        make_mail(
            "new",
            attachments=[
                ("invoice-new.pdf", "application/pdf", pdf("new", 3000)),
                ("terms.pdf", "application/pdf", pdf("terms", 3000)),
                ("invoice-tiny.pdf", "application/pdf", pdf("tiny")),
                ("invoice-photo.jpg", "image/jpeg", b"\xff\xd8\xff" + b"j" * 3000),
            ],
        ),
        internal_date=new,
    )
    plain = run_fetch(make_source(mailbox, tmp_path))
    assert len(plain.stored) == 4  # every PDF, old and new

    source = make_source(
        mailbox,
        tmp_path,
        since="2026-01-01",
        filename_globs=["INVOICE-*"],
        media_types=["application/pdf", "image/*"],
        min_size=1000,
    )
    run = run_fetch(source)
    assert sorted(s.filename for s in run.stored) == ["invoice-new.pdf", "invoice-photo.jpg"]


def test_after_import_flag_happens_after_commit(mailbox: Mailbox, tmp_path: Path) -> None:
    uid1 = mailbox.append(make_mail("one", attachments=[("1.pdf", "application/pdf", pdf("f1"))]))
    uid2 = mailbox.append(make_mail("no attachment"))
    uid3 = mailbox.append(make_mail("three", attachments=[("3.pdf", "application/pdf", pdf("f3"))]))
    source = make_source(mailbox, tmp_path, after_import="flag")
    gen = source.fetch(None)
    first = next(gen)
    assert first.filename == "1.pdf"  # type: ignore[union-attr]
    # Yielded, but the engine has not committed it yet: not flagged.
    assert "\\Flagged" not in mailbox.flags(uid1)
    second = next(gen)  # resuming means "committed"
    assert second.filename == "3.pdf"  # type: ignore[union-attr]
    assert "\\Flagged" in mailbox.flags(uid1)
    assert "\\Flagged" not in mailbox.flags(uid3)
    with pytest.raises(StopIteration):
        next(gen)
    assert "\\Flagged" in mailbox.flags(uid3)
    assert "\\Flagged" not in mailbox.flags(uid2)  # nothing imported from it
    assert "\\Seen" not in mailbox.flags(uid2)  # fetching does not mark mail read


def test_after_import_move(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.create("Imported")
    mailbox.append(make_mail("one", attachments=[("1.pdf", "application/pdf", pdf("m1"))]))
    mailbox.append(make_mail("keep me"))
    mailbox.append(make_mail("two", attachments=[("2.pdf", "application/pdf", pdf("m2"))]))
    source = make_source(mailbox, tmp_path, after_import={"move": "Imported"})
    source.check()
    gen = source.fetch(None)
    first = next(gen)
    assert len(mailbox.uids("INBOX")) == 3 and mailbox.uids("Imported") == []
    second = next(gen)  # the first mail's document is committed: it moves
    assert len(mailbox.uids("INBOX")) == 2 and len(mailbox.uids("Imported")) == 1
    with pytest.raises(StopIteration):
        next(gen)
    assert len(mailbox.uids("INBOX")) == 1  # only the mail without attachment stays
    assert len(mailbox.uids("Imported")) == 2
    # Imported from the target folder, the moved mails map to the same ids.
    moved = run_fetch(make_source(mailbox, tmp_path, folders=["Imported"]))
    assert moved.ids == [first.external_id, second.external_id]


def test_multiple_folders_and_unicode_folder(mailbox: Mailbox, tmp_path: Path) -> None:
    # The fixture speaks raw IMAP: the folder name in modified UTF-7, written
    # out by hand so the connector's encoder is checked against it.
    encoded = "Rechnungen Gesch&AOQ-ft &- Co"
    mailbox.create(encoded)
    _seed(mailbox, 2, "INBOX")
    _seed(mailbox, 3, encoded)
    source = make_source(mailbox, tmp_path, folders=["INBOX", "Rechnungen Geschäft & Co"])
    source.check()
    run = run_fetch(source)
    assert len(run.stored) == 5
    folders = json.loads(run.cursor or "")["folders"]
    assert set(folders) == {"INBOX", "Rechnungen Geschäft & Co"}
    assert {s.doc.metadata.fields["mail_folder"] for s in run.stored} == set(folders)
    assert imap_utf7("Rechnungen Geschäft & Co") == encoded


def test_starttls(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.append(make_mail("s", attachments=[("s.pdf", "application/pdf", pdf("st"))]))
    source = make_source(mailbox, tmp_path, security="starttls", port=mailbox.server.imap_port)
    source.check()
    assert [s.filename for s in run_fetch(source).stored] == ["s.pdf"]


def test_untrusted_certificate_is_a_clear_error(mailbox: Mailbox, tmp_path: Path) -> None:
    source = make_source(mailbox, tmp_path, ca_file=None)
    with pytest.raises(ConnectorError, match=r"not trusted.*ca_file") as info:
        source.check()
    assert not isinstance(info.value, TransientError)
    make_source(mailbox, tmp_path, ca_file=None, verify_tls=False).check()


def test_missing_folder_and_move_target(mailbox: Mailbox, tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="'Nope'"):
        make_source(mailbox, tmp_path, folders=["Nope"]).check()
    with pytest.raises(ConnectorError, match="move target folder 'Archive'"):
        make_source(mailbox, tmp_path, after_import={"move": "Archive"}).check()


def test_unreachable_server_is_transient(mailbox: Mailbox, tmp_path: Path) -> None:
    from helpers import free_port

    with pytest.raises(TransientError, match="cannot connect"):
        make_source(mailbox, tmp_path, port=free_port()).check()


def test_option_validation() -> None:
    base = {"host": "h", "username": "u", "password": "p"}
    with pytest.raises(ValidationError, match="allow_insecure"):
        ImapOptions.model_validate({**base, "security": "none"})
    assert ImapOptions.model_validate({**base, "security": "none", "allow_insecure": True})
    with pytest.raises(ValidationError, match="media type"):
        ImapOptions.model_validate({**base, "media_types": ["pdf"]})
    with pytest.raises(ValidationError):
        ImapOptions.model_validate({**base, "after_import": "delete"})
    with pytest.raises(ValidationError):
        ImapOptions.model_validate({**base, "folders": []})
    with pytest.raises(ValidationError):
        ImapOptions.model_validate({**base, "colour": "red"})
    assert ImapOptions.model_validate({**base, "security": "starttls"}).effective_port == 143
    assert ImapOptions.model_validate(base).effective_port == 993


def test_unreadable_cursor_rescans(mailbox: Mailbox, tmp_path: Path) -> None:
    _seed(mailbox, 1)
    logger = RecordingLogger()
    run = run_fetch(make_source(mailbox, tmp_path, logger), "not json")
    assert len(run.stored) == 1
    assert "imap.cursor_reset" in logger.names()


SECRET = "Wr0ng-S3cret-imap-7f3a9c"


def test_secret_never_leaks(mailbox: Mailbox, tmp_path: Path) -> None:
    logger = RecordingLogger()
    source = make_source(mailbox, tmp_path, logger, password=SECRET)
    texts = [repr(source.options), str(source.options), source.options.model_dump_json()]
    for action in (source.check, lambda: run_fetch(source)):
        with pytest.raises(ConnectorError) as info:
            action()
        assert "refused" in str(info.value)
        texts += [str(info.value), repr(info.value), info.exconly()]
        texts += [repr(arg) for arg in info.value.args]
        cause = info.value.__cause__ or info.value.__context__
        texts.append(repr(cause))
    texts.append(logger.text())
    for text in texts:
        assert SECRET not in text


def test_attachment_inside_forwarded_mail(mailbox: Mailbox, tmp_path: Path) -> None:
    from email.message import EmailMessage
    from email.parser import BytesParser
    from email.policy import default

    inner_pdf = pdf("forwarded")
    inner = BytesParser(policy=default).parsebytes(
        make_mail("Original invoice", attachments=[("original.pdf", "application/pdf", inner_pdf)])
    )
    outer = EmailMessage()
    outer["From"] = "Colleague <colleague@firm.example>"
    outer["To"] = "accounts@firm.example"
    outer["Subject"] = "Fwd: Original invoice"
    outer["Message-ID"] = "<fwd-1@firm.example>"
    outer.set_content("see attached")
    outer.add_attachment(inner)  # message/rfc822
    mailbox.append(outer.as_bytes())
    run = run_fetch(make_source(mailbox, tmp_path))
    assert [(s.filename, s.content) for s in run.stored] == [("original.pdf", inner_pdf)]
    assert run.stored[0].doc.metadata.fields["mail_from"] == "Colleague <colleague@firm.example>"
