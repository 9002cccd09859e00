"""The ``email`` target: one mail per document with the file attached (stdlib smtplib)."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Target, hookimpl

from .target import EmailAccessError, EmailTarget, message_id

__all__ = ["EmailAccessError", "EmailTarget", "message_id"]


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    return [EmailTarget]
