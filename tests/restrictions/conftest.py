"""Fixtures shared by the tests in tests/restrictions/ (pytest finds them here by name)."""

from __future__ import annotations

from fixtures.restrictions_db import restrictions_db

# The shared fixtures of this folder, available to its tests by name.
__all__ = [
    "restrictions_db",
]
