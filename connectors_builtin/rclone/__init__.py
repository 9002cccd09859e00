"""The ``rclone`` export target: any remote the ``rclone`` program is configured for."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Target, hookimpl

from .target import RcloneOptions, RcloneTarget

__all__ = ["RcloneOptions", "RcloneTarget"]


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    return [RcloneTarget]
