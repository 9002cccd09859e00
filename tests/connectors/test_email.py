"""The email target against aiosmtpd servers on loopback (STARTTLS, implicit TLS, plain)."""

from __future__ import annotations

import email
import email.policy
import os
import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fixtures.smtp_server import PASSWORD, SmtpServer
from fixtures.target_items import breaking, context, make_item
from helpers import free_port
from invoicesync.connectors_builtin.email import EmailAccessError, EmailTarget, message_id
from invoicesync.plugins import PermanentError, TransientError
from pydantic import ValidationError

pytestmark = pytest.mark.server

Factory = Callable[..., SmtpServer]
PDF = b"%PDF-1.4\n" + os.urandom(60_000) + b"\n%%EOF\n"


def make_target(tmp_path: Path, options: dict[str, Any], account: str = "mail-acct") -> EmailTarget:
    opts = EmailTarget.Options.model_validate(options, context={"base_dir": tmp_path})
    return EmailTarget(account, opts, context(tmp_path, account))


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def attachments(msg: EmailMessage) -> list[tuple[str | None, bytes]]:
    out = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append((part.get_filename(), payload))
    return out


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_one_mail_with_the_attachment_byte_for_byte(
    smtp_factory: Factory, tmp_path: Path, mode: str
) -> None:
    server = smtp_factory(mode)
    target = make_target(tmp_path, server.options(cc=["copy@example.test"]))
    item = make_item(tmp_path, PDF)
    try:
        target.check()
        assert server.handler.messages == []  # check sends nothing
        result = target.export(item)
    finally:
        target.close()
    assert len(server.handler.messages) == 1
    received = server.handler.messages[0]
    assert received.mail_from == "sync@example.test"
    assert received.rcpt_tos == ["inbox@example.test", "copy@example.test"]
    msg = parse(received.content)
    assert attachments(msg) == [("invoice.pdf", PDF)]
    assert msg["Subject"] == "incoming_invoice RE-2026-0042 from acme (2026-02-27)"
    assert msg["Message-ID"] == result.remote_ref
    assert result.remote_ref == message_id("mail-acct", item.document.id, item.document.sha256)
    assert msg["To"] == "inbox@example.test"
    assert msg["Cc"] == "copy@example.test"
    body = msg.get_body(("plain",))
    assert body is not None
    assert "Gross amount: 119.00 EUR" in body.get_content()


def test_plain_smtp_needs_allow_insecure(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("none")
    options = server.options()
    target = make_target(tmp_path, options)
    target.export(make_item(tmp_path, PDF))
    target.close()
    assert attachments(parse(server.handler.messages[0].content)) == [("invoice.pdf", PDF)]
    del options["allow_insecure"]
    with pytest.raises(ValidationError, match="allow_insecure"):
        EmailTarget.Options.model_validate(options)
    with pytest.raises(ValidationError, match="in clear over the network"):
        EmailTarget.Options.model_validate(
            {
                **options,
                "allow_insecure": True,
                "host": "smtp.example.com",
                "username": "u",
                "password": "p",
            }
        )


def test_templates_render_placeholders_and_dates(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("starttls")
    target = make_target(
        tmp_path,
        server.options(
            subject=(
                "Beleg {number} vom {document_date:%d.%m.%Y}\nBcc: evil@example.test {due_date}"
            ),
            body="{attachment}|{remote_name}|{sha8}|{import_date:%Y}|{account}|{{literal}}",
        ),
    )
    item = make_item(tmp_path, PDF, remote_name="acme/2026/RE 42.pdf")
    target.export(item)
    target.close()
    msg = parse(server.handler.messages[0].content)
    # The newline became a space: no header injection through a template.
    assert msg["Subject"] == "Beleg RE-2026-0042 vom 27.02.2026 Bcc: evil@example.test unknown"
    assert msg["Bcc"] is None
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().strip() == (
        f"RE 42.pdf|acme/2026/RE 42.pdf|{item.document.sha8}|2026|mail-acct|{{literal}}"
    )


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{number.__class__}", "attribute and index access"),
        ("{tags[0]}", "attribute and index access"),
        ("{nope}", "unknown placeholder"),
        ("{number:>10}", "only dates take a format"),
        ("{}", "positional"),
        ("{number!r}", "conversions"),
        ("{number", "malformed template"),
    ],
)
def test_bad_templates_are_configuration_errors(template: str, error: str) -> None:
    base = {"host": "h", "from": "a@b.test", "to": "c@d.test"}
    with pytest.raises(ValidationError, match=error):
        EmailTarget.Options.model_validate({**base, "subject": template})
    with pytest.raises(ValidationError, match=error):
        EmailTarget.Options.model_validate({**base, "body": template})


def test_transient_452_then_accepted_gives_one_mail(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("starttls")
    server.handler.data_replies.extend(["452 4.3.1 Insufficient system storage"])
    target = make_target(tmp_path, server.options())
    item = make_item(tmp_path, PDF)
    with pytest.raises(TransientError) as info:
        target.export(item)
    assert not isinstance(info.value, PermanentError)
    assert "452 4.3.1 Insufficient system storage" in str(info.value)
    assert server.handler.messages == []
    first = target.export(item)  # the engine's retry
    again = target.export(item)  # a re-export of the same revision sends nothing
    target.close()
    assert first.remote_ref == again.remote_ref
    assert len(server.handler.messages) == 1
    assert attachments(parse(server.handler.messages[0].content)) == [("invoice.pdf", PDF)]


def test_connection_lost_during_data_then_retry_gives_one_mail(
    smtp_factory: Factory, tmp_path: Path
) -> None:
    server = smtp_factory("starttls")
    server.handler.drop_on_data = 1
    target = make_target(tmp_path, server.options())
    item = make_item(tmp_path, PDF)
    with pytest.raises(TransientError) as info:
        target.export(item)
    assert not isinstance(info.value, PermanentError)
    assert server.handler.messages == []
    ref = target.export(item).remote_ref  # the retry reconnects by itself
    target.export(item)  # and a further re-export sends nothing
    target.close()
    assert len(server.handler.messages) == 1
    msg = parse(server.handler.messages[0].content)
    assert msg["Message-ID"] == ref
    assert attachments(msg) == [("invoice.pdf", PDF)]


def test_permanent_554_carries_the_reply_text(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("tls")
    server.handler.data_replies.extend(["554 5.7.1 Attachment type not allowed"])
    target = make_target(tmp_path, server.options())
    with pytest.raises(PermanentError, match=re.escape("554 5.7.1 Attachment type not allowed")):
        target.export(make_item(tmp_path, PDF))
    # The connection stays usable after a refused message.
    target.export(make_item(tmp_path, b"another document", external_id="inv-2"))
    target.close()
    assert len(server.handler.messages) == 1


def test_reexport_after_restart_sends_nothing_new_revision_sends(
    smtp_factory: Factory, tmp_path: Path
) -> None:
    server = smtp_factory("starttls")
    item = make_item(tmp_path, PDF)
    first = make_target(tmp_path, server.options())
    ref = first.export(item).remote_ref
    first.close()
    # A new instance (daemon restarted after a crash) remembers through the state folder.
    second = make_target(tmp_path, server.options())
    assert second.export(item).remote_ref == ref
    changed = make_item(tmp_path, PDF + b"v2")
    new_ref = second.export(changed).remote_ref
    second.close()
    assert new_ref != ref
    ids = [parse(m.content)["Message-ID"] for m in server.handler.messages]
    assert ids == [ref, new_ref]


def test_wrong_password_is_an_access_error_without_the_password(
    smtp_factory: Factory, tmp_path: Path
) -> None:
    server = smtp_factory("starttls")
    target = make_target(tmp_path, server.options(password="wrong-pass-987"))
    with pytest.raises(EmailAccessError) as info:
        target.check()
    assert "authentication as 'mailer'" in str(info.value)
    assert "535" in str(info.value)
    assert "wrong-pass-987" not in str(info.value) and PASSWORD not in str(info.value)
    with pytest.raises(EmailAccessError):
        target.export(make_item(tmp_path, PDF))
    assert server.handler.messages == []


def test_refused_login_is_not_repeated_for_every_document(
    smtp_factory: Factory, tmp_path: Path
) -> None:
    server = smtp_factory("starttls")
    target = make_target(tmp_path, server.options(password="wrong-pass-987"))
    with pytest.raises(EmailAccessError, match="535"):
        target.export(make_item(tmp_path, PDF, external_id="first"))
    per_login = server.handler.auth_attempts  # smtplib tries each offered mechanism
    assert per_login >= 1
    for n in range(4):
        with pytest.raises(EmailAccessError, match="535"):
            target.export(make_item(tmp_path, PDF + bytes([n]), external_id=f"d{n}"))
    assert server.handler.auth_attempts == per_login  # the same error, fast: no lockout
    with pytest.raises(EmailAccessError):
        target.check()  # an explicit check always tries again
    assert server.handler.auth_attempts == 2 * per_login
    target.close()


def test_untrusted_certificate_is_refused(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("tls")
    options = server.options()
    del options["ca_file"]
    with pytest.raises(EmailAccessError, match=r"certificate .* not trusted.*ca_file"):
        make_target(tmp_path, options).check()


def test_starttls_required_but_not_offered(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("none")
    options = server.options(security="starttls", allow_insecure=False)
    with pytest.raises(EmailAccessError, match="does not offer STARTTLS"):
        make_target(tmp_path, options).check()


def test_unreachable_server_is_transient(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("starttls")
    target = make_target(tmp_path, server.options(port=free_port()))
    with pytest.raises(TransientError, match="network error"):
        target.check()
    with pytest.raises(TransientError):
        target.export(make_item(tmp_path, PDF))


def test_refused_recipients(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("starttls")
    server.handler.refuse_rcpt["gone@example.test"] = "550 5.1.1 No such user"
    server.handler.refuse_rcpt["busy@example.test"] = "450 4.2.1 Mailbox busy"
    alone = make_target(tmp_path, server.options(to=["gone@example.test"]))
    with pytest.raises(
        PermanentError, match=re.escape("gone@example.test: 550 5.1.1 No such user")
    ):
        alone.check()
    with pytest.raises(PermanentError, match=re.escape("550 5.1.1 No such user")):
        alone.export(make_item(tmp_path, PDF))
    alone.close()
    partly = make_target(
        tmp_path / "p", server.options(to=["inbox@example.test", "busy@example.test"])
    )
    with pytest.raises(TransientError, match="accepted for the other recipients"):
        partly.export(make_item(tmp_path, PDF))
    partly.close()
    assert [m.rcpt_tos for m in server.handler.messages] == [["inbox@example.test"]]


def test_too_large_is_permanent_and_nothing_is_sent(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("starttls")
    target = make_target(tmp_path, server.options(max_size="50KB"))
    assert target.options.max_size == 50_000
    with pytest.raises(PermanentError, match="max_size"):
        target.export(make_item(tmp_path, PDF))
    target.export(make_item(tmp_path, b"small"))
    target.close()
    assert len(server.handler.messages) == 1


def test_broken_stream_sends_nothing(smtp_factory: Factory, tmp_path: Path) -> None:
    server = smtp_factory("starttls")
    target = make_target(tmp_path, server.options())
    item = make_item(tmp_path, PDF)
    with pytest.raises(TransientError, match="reading the content"):
        target.export(breaking(item, fail_after=len(PDF) // 2))
    assert server.handler.messages == []
    target.export(item)
    target.close()
    assert attachments(parse(server.handler.messages[0].content)) == [("invoice.pdf", PDF)]


def test_reconnects_after_the_server_dropped_the_connection(
    smtp_factory: Factory, tmp_path: Path
) -> None:
    server = smtp_factory("starttls")
    target = make_target(tmp_path, server.options())
    target.export(make_item(tmp_path, b"one", external_id="a"))
    assert target._smtp is not None
    target._smtp.close()  # as if the server had hung up
    target._last_used = 0.0  # idle long enough to be probed
    target.export(make_item(tmp_path, b"two", external_id="b"))
    target.close()
    assert len(server.handler.messages) == 2


def test_options_and_names() -> None:
    opts = EmailTarget.Options.model_validate(
        {
            "host": "smtp.example.com",
            "from": "Me <me@example.com>",
            "to": "in@example.com",
            "username": "me",
            "password": "hunter2",
            "security": "tls",
        }
    )
    assert opts.effective_port == 465 and opts.to == ["in@example.com"]
    assert "hunter2" not in repr(opts)
    for bad in (
        {"to": ["not an address"]},
        {"from": "x"},
        {"to": []},
        {"username": "u"},
        {"max_size": "lots"},
    ):
        with pytest.raises(ValidationError):
            EmailTarget.Options.model_validate(
                {"host": "h", "from": "a@b.test", "to": ["c@d.test"], **bad}
            )
    target = EmailTarget("a", opts, context(Path(os.environ.get("TMPDIR", "/tmp")) / "email-n"))
    assert target.sanitize_component('Rechnung: 4/5 "A"?.pdf') == "Rechnung_ 4_5 _A__.pdf"
    assert target.sanitize_component("..") == "_"
    assert message_id("a", "demo/1", "ab" * 32) == message_id("a", "demo/1", "ab" * 32)
    assert message_id("a", "demo/1", "ab" * 32) != message_id("b", "demo/1", "ab" * 32)
