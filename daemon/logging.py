"""Structured logs on stderr (SPEC section 6).

One event per line: JSON when stderr is not a TTY (or ``--log-format json``),
a readable console rendering otherwise. Every line has ``timestamp``, ``level``
and ``event``; callers bind the ids involved (``source``, ``account``,
``document``, ``run_id``). Known secret values are masked in every field.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Mask these values wherever they would appear in a log line."""
    _secrets.update(v for v in values if v and len(v) >= 3)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(v) for v in value)
    return value


def redact_secrets(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: replace known secret values with ``***``."""
    if not _secrets:
        return event_dict
    return {k: _mask(v) for k, v in event_dict.items()}


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog for the whole process (idempotent)."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    """A logger with ids bound, e.g. ``get_logger(account="archive", run_id=...)``."""
    return structlog.get_logger().bind(**bound)
