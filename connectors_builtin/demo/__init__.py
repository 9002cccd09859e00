"""The ``demo`` source: a deterministic sample supplier portal."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Source, hookimpl

from .portal import DEMO_COMPANIES
from .source import DemoOptions, DemoSource

__all__ = ["DEMO_COMPANIES", "DemoOptions", "DemoSource"]


@hookimpl
def invoicesync_register_sources() -> list[type[Source[Any]]]:
    return [DemoSource]
