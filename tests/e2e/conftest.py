"""Fixtures shared by the tests in tests/e2e/ (pytest finds them here by name)."""

from __future__ import annotations

from fixtures.daemon_proc import daemon_env_fixture, start_daemon_fixture
from fixtures.postgres_schema import pg_url_fixture
from fixtures.s3_server import s3_server_fixture
from fixtures.smtp_server import smtp_certificate_fixture, smtp_factory_fixture

# The shared fixtures of this folder, available to its tests by name.
__all__ = [
    "daemon_env_fixture",
    "pg_url_fixture",
    "s3_server_fixture",
    "smtp_certificate_fixture",
    "smtp_factory_fixture",
    "start_daemon_fixture",
]
