"""The ``demo`` source: a deterministic sample supplier portal."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Source, hookimpl


@hookimpl
def invoicesync_register_sources() -> list[type[Source[Any]]]:
    return []
