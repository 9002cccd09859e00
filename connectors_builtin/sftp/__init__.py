"""The ``sftp`` target: upload documents to an SSH server over SFTP.

paramiko is imported lazily (extra ``sftp``), so that loading the plugin set
costs nothing for users who never configure this target.
"""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Target, hookimpl

from .target import SftpAccessError, SftpTarget

__all__ = ["SftpAccessError", "SftpTarget"]


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    return [SftpTarget]
