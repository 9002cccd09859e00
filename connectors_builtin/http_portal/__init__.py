"""The ``http_portal`` source: documents from a generic JSON portal API."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Source, hookimpl

from .source import HttpPortalSource

__all__ = ["HttpPortalSource"]


@hookimpl
def invoicesync_register_sources() -> list[type[Source[Any]]]:
    return [HttpPortalSource]
