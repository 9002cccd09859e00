"""Fixtures shared by the tests in tests/connectors/ (pytest finds them here by name)."""

from __future__ import annotations

from fixtures.dovecot import dovecot, mailbox
from fixtures.http_faults import fault_server_fixture
from fixtures.portal_server import portal, portal_factory
from fixtures.rclone_remotes import rclone_remotes_fixture
from fixtures.s3_server import s3_server_fixture
from fixtures.smtp_server import smtp_certificate_fixture, smtp_factory_fixture
from fixtures.sshd import sshd_fixture
from fixtures.webdav_server import (
    any_webdav_server_fixture,
    apache_webdav_server_fixture,
    lighttpd_webdav_server_fixture,
    webdav_server_fixture,
)

# The shared fixtures of this folder, available to its tests by name.
__all__ = [
    "any_webdav_server_fixture",
    "apache_webdav_server_fixture",
    "dovecot",
    "fault_server_fixture",
    "lighttpd_webdav_server_fixture",
    "mailbox",
    "portal",
    "portal_factory",
    "rclone_remotes_fixture",
    "s3_server_fixture",
    "smtp_certificate_fixture",
    "smtp_factory_fixture",
    "sshd_fixture",
    "webdav_server_fixture",
]
