"""Error types that connectors raise and the engine understands.

The engine retries :class:`TransientError` with back-off, records
:class:`PermanentError` as *rejected* (retried only by ``invoicesync retry``),
and refuses to start on :class:`ConfigurationError`.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectorError",
    "InvoicesyncError",
    "PermanentError",
    "PluginError",
    "TransientError",
]


class InvoicesyncError(Exception):
    """Base of every error invoicesync raises on purpose."""


class ConfigurationError(InvoicesyncError):
    """The configuration (or a connector's options) is wrong; nothing should run."""


class PluginError(InvoicesyncError):
    """A plugin failed to load, or implements something it must not."""


class ConnectorError(InvoicesyncError):
    """A connector could not do its work. Prefer one of the two subclasses."""


class TransientError(ConnectorError):
    """Worth retrying later: timeouts, refused connections, HTTP 5xx or 429.

    ``retry_after`` (seconds) is a hint from the remote side, such as the
    ``Retry-After`` header; the engine waits at least that long.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """The remote side refused this document for good (quota, type, validation).

    The message is recorded as the rejection reason, so make it say why.
    """
