"""Fixtures shared by the tests in tests/daemon/ (pytest finds them here by name)."""

from __future__ import annotations

from fixtures.daemon_proc import daemon_env_fixture, start_daemon_fixture

# The shared fixtures of this folder, available to its tests by name.
__all__ = [
    "daemon_env_fixture",
    "start_daemon_fixture",
]
