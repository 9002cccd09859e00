"""The ``folder`` source and target: documents in a local directory tree."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Source, Target, hookimpl


@hookimpl
def invoicesync_register_sources() -> list[type[Source[Any]]]:
    return []


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    return []
