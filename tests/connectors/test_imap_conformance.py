"""The imap source passes the connector conformance suite against a real Dovecot."""

# Fixtures imported from their module are "redefined" as test arguments.

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.dovecot import Mailbox, make_mail
from fixtures.source_helpers import pdf
from invoicesync.connectors_builtin.imap.source import ImapOptions, ImapSource
from invoicesync.plugins.testing import SourceConformance, make_context

pytestmark = pytest.mark.server

SECRET = "conformance-Wr0ng-imap-pw-81c2"


def _source(mailbox: Mailbox, tmp_path: Path, **overrides: Any) -> ImapSource:
    server = mailbox.server
    options = {
        "host": server.host,
        "port": server.imaps_port,
        "username": mailbox.username,
        "password": mailbox.password,
        "ca_file": str(server.ca_file),
        "timeout": 20,
        **overrides,
    }
    return ImapSource("mail", ImapOptions.model_validate(options), make_context(tmp_path / "s"))


class TestImapSourceConformance(SourceConformance):
    @pytest.fixture
    def source(self, mailbox: Mailbox, tmp_path: Path) -> ImapSource:
        conn = mailbox.connect()
        try:
            # Four mails: two with one PDF, one with two, one without any.
            for i, names in enumerate([["a.pdf"], ["b.pdf", "c.pdf"], [], ["d.pdf"]]):
                mail = make_mail(
                    f"Invoice {i}",
                    attachments=[(n, "application/pdf", pdf(f"conf-{i}-{n}")) for n in names],
                )
                mailbox.append(mail, conn=conn)
        finally:
            conn.logout()
        return _source(mailbox, tmp_path)

    @pytest.fixture
    def add_document(self, mailbox: Mailbox) -> Callable[[], None]:
        def add() -> None:
            mail = make_mail("Late", attachments=[("late.pdf", "application/pdf", pdf("late"))])
            mailbox.append(mail)

        return add

    @pytest.fixture
    def broken_source(self, mailbox: Mailbox, tmp_path: Path) -> ImapSource:
        return _source(mailbox, tmp_path, password=SECRET)

    @pytest.fixture
    def secret(self) -> str:
        return SECRET
