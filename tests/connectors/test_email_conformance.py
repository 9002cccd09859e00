"""The email target passes the connector conformance suite against aiosmtpd."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fixtures.smtp_server import SmtpServer
from fixtures.target_items import context
from helpers import IN_CI
from invoicesync.connectors_builtin.email import EmailTarget

try:
    from invoicesync.plugins.testing import TargetConformance
except ImportError:  # pragma: no cover - until the suite is installed
    if IN_CI:
        raise
    pytest.skip("the conformance suite is not installed yet", allow_module_level=True)

pytestmark = pytest.mark.server

WRONG_PASSWORD = "wrong-smtp-Password-for-conformance"


def _received(server: SmtpServer) -> list[tuple[str, bytes | None]]:
    """(remote name, attachment bytes) of every received mail, oldest first."""
    out = []
    for m in server.handler.messages:
        msg = email.message_from_bytes(m.content, policy=email.policy.default)
        payload = None
        for part in msg.iter_attachments():  # type: ignore[attr-defined]
            payload = part.get_payload(decode=True)
        out.append((str(msg["X-Invoicesync-Name"]), payload))
    return out


class TestEmailTargetConformance(TargetConformance):
    # A mail's "name" is a header, not a path: it cannot escape anything.
    remote_names_are_paths = False
    unsupported: ClassVar[dict[str, str]] = {
        "test_new_revision_replaces_content": (
            "a sent mail cannot be replaced: a new revision is a new mail with its own "
            "Message-ID (docs/connectors/email.md)"
        ),
    }

    @pytest.fixture
    def server(self, smtp_factory: Any) -> SmtpServer:
        server: SmtpServer = smtp_factory("starttls")
        return server

    @pytest.fixture
    def target(self, server: SmtpServer, tmp_path: Path) -> EmailTarget:
        opts = EmailTarget.Options.model_validate(server.options())
        target = EmailTarget("mail-conf", opts, context(tmp_path))
        target.check()
        return target

    @pytest.fixture
    def read_remote(self, server: SmtpServer) -> Any:
        def read(name: str) -> bytes | None:
            found = [data for stored, data in _received(server) if stored == name]
            return found[-1] if found else None

        return read

    @pytest.fixture
    def list_remote(self, server: SmtpServer) -> Any:
        return lambda: [name for name, _ in _received(server)]

    @pytest.fixture
    def secret(self) -> str:
        return WRONG_PASSWORD

    @pytest.fixture
    def broken_target(self, server: SmtpServer, tmp_path: Path) -> EmailTarget:
        opts = EmailTarget.Options.model_validate(server.options(password=WRONG_PASSWORD))
        return EmailTarget("mail-broken", opts, context(tmp_path / "broken"))
