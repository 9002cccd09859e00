"""Fixtures shared by the example plugin's tests (pytest finds them here by name)."""

from __future__ import annotations

from paperless_fixtures import make_target, paperless

# The shared fixtures of this folder, available to its tests by name.
__all__ = [
    "make_target",
    "paperless",
]
