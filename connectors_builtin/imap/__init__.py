"""The ``imap`` source: invoice attachments from IMAP mailboxes."""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import Source, hookimpl

from .source import ImapSource

__all__ = ["ImapSource"]


@hookimpl
def invoicesync_register_sources() -> list[type[Source[Any]]]:
    return [ImapSource]
