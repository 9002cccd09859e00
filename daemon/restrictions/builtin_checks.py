"""Attribute checks shipped with invoicesync, registered through the plugin hook."""

from __future__ import annotations

from invoicesync.plugins.checks import AttributeCheck
from invoicesync.plugins.hookspecs import hookimpl


@hookimpl
def invoicesync_register_checks() -> list[type[AttributeCheck]]:
    return []
