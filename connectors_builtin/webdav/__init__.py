"""The ``webdav`` export target (Nextcloud, ownCloud, any RFC 4918 server)."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Target, hookimpl

from .target import WebDAVOptions, WebDAVTarget

__all__ = ["WebDAVOptions", "WebDAVTarget"]


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    return [WebDAVTarget]
