"""The ``folder`` source and target: documents in a local directory tree."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Source, Target, hookimpl

from .source import FolderSource, FolderSourceOptions
from .target import FolderTarget, FolderTargetOptions, cleanup_temp_files

__all__ = [
    "FolderSource",
    "FolderSourceOptions",
    "FolderTarget",
    "FolderTargetOptions",
    "cleanup_temp_files",
]


@hookimpl
def invoicesync_register_sources() -> list[type[Source[Any]]]:
    return [FolderSource]


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    return [FolderTarget]
