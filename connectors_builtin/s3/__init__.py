"""The ``s3`` export target (AWS S3 and S3-compatible object stores).

boto3 is imported only when the target first connects, so that the plugin
loads without it; ``pip install 'invoicesync[s3]'`` installs it.
"""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Target, hookimpl

from .target import S3Options, S3Target

__all__ = ["S3Options", "S3Target"]


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    return [S3Target]
