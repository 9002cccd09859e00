"""Fixtures shared by the tests in tests/plugins/ (pytest finds them here by name)."""

from __future__ import annotations

from fixtures.plugin_dists import install_plugin, plugin_site

# The shared fixtures of this folder, available to its tests by name.
__all__ = [
    "install_plugin",
    "plugin_site",
]
