"""Helpers shared by the network export targets (WebDAV, S3, rclone).

Private to ``invoicesync.connectors_builtin``: third-party connectors must not
import it (it may change at any time); they import only ``invoicesync.plugins``.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any

from invoicesync.plugins import (
    CONTROL_CHARACTERS,
    ConfigurationError,
    ConnectorContext,
    TransientError,
)
from pydantic import BeforeValidator, Field, WithJsonSchema

__all__ = [
    "ContentReadError",
    "Duration",
    "import_optional",
    "parse_retry_after",
    "replace_chars",
    "short_reason",
    "spooled_content",
    "stream_size",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(value: Any) -> Any:
    # SPEC section 4 writes durations as ``30s``/``15m``; a bare number means seconds.
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 30s, 2m or 1h (or seconds as a number)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    Field(gt=0, le=86400),
    # pydantic cannot express the bounds of a value that arrives as a string
    # (it would print the non-standard keywords gt/le): the schema says it.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                {"type": "string", "pattern": _DURATION.pattern},
            ],
            "examples": ["30s", "5m", "1h", 60],
        }
    ),
]
"""Seconds, written as a number or as ``30s``, ``5m``, ``1h``."""


class ContentReadError(Exception):
    """Reading the local content failed (not the upload).

    A private type rather than OSError, so that no HTTP or SDK layer in between
    can mistake it for a network error and wrap or retry it.
    """


def replace_chars(component: str, chars: str, *, strip_trailing: str = "") -> str:
    """Replace each of ``chars`` by ``_`` and trailing ``strip_trailing`` characters too.

    Trailing characters are replaced rather than removed so that two names
    differing only there stay distinct, and so that the result is never empty.
    """
    out = "".join("_" if c in chars else c for c in component)
    if strip_trailing:
        stripped = out.rstrip(strip_trailing)
        out = stripped + "_" * (len(out) - len(stripped))
    return out or "_"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def short_reason(text: str, limit: int = 300) -> str:
    """A server-supplied message made safe for one log line: no control characters, capped."""
    text = CONTROL_CHARACTERS.sub(" ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stream_size(stream: IO[bytes], fallback: int) -> int:
    """The byte length of a seekable stream (from its current position), else ``fallback``."""
    try:
        if stream.seekable():
            start = stream.tell()
            end = stream.seek(0, 2)
            stream.seek(start)
            return end - start
    except (OSError, ValueError):
        pass
    return fallback


def import_optional(module: str, extra: str) -> Any:
    """Import a heavy optional library, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"this connector needs the Python package {module.split('.')[0]!r}: "
            f"pip install 'invoicesync[{extra}]'"
        ) from exc


@contextlib.contextmanager
def spooled_content(stream: IO[bytes], context: ConnectorContext) -> Iterator[IO[bytes]]:
    """A complete local copy of ``stream`` (in memory up to 8 MiB, else on disk).

    Uploading from the copy means a content stream that breaks half-way fails
    here, before anything reached the server. An upload aborted mid-body can
    otherwise leave a partial temporary file that the server is still writing
    when our clean-up DELETE arrives (seen with WsgiDAV and rclone rcd).
    """
    directory = Path(context.state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+b", dir=str(directory)) as spool:
        try:
            while True:
                if context.stop.is_set():
                    raise ContentReadError("invoicesync is stopping")
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                spool.write(chunk)
        except ContentReadError as exc:
            raise TransientError(f"could not read the document's content: {exc}") from None
        except Exception as exc:
            reason = short_reason(str(exc)) or type(exc).__name__
            raise TransientError(f"could not read the document's content: {reason}") from None
        spool.seek(0)
        yield spool
