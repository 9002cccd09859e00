"""Structured logs on stderr (SPEC section 6).

One event per line: JSON when stderr is not a TTY (or ``--log-format json``),
a readable console rendering otherwise. Every line has ``timestamp``, ``level``
and ``event``; callers bind the ids involved (``source``, ``account``,
``document``, ``run_id``). Known secret values are masked in every field.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, MutableMapping
from types import ModuleType
from typing import Any, TextIO

from invoicesync.daemon.config.secrets import SecretRedactor

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# One redactor for the process; configuration loads add the secrets they
# resolved (a reload may add more; old ones stay masked, which is harmless).
_redactor = SecretRedactor()
_secrets: set[str] = set()
_json = False
_settings = ("auto", "info")
_stream: TextIO | None = None
# Whether structlog carries the settings above; see configure_logging.
_applied = False


def _structlog() -> ModuleType:
    """structlog, imported the first time a process logs (or configures for real).

    ``import structlog`` imports ``structlog.dev``, which imports rich's
    console, traceback, pretty printer and pygments (about 14 % of the
    start-up of a no-op sync, docs/performance.md "Start-up") -- only for its
    ConsoleRenderer's rich tracebacks. Our processor chain renders exceptions
    with ``format_exc_info`` before any renderer, so that formatter never runs:
    structlog is imported with rich hidden (unless rich is loaded already),
    and then falls back to plain tracebacks, which is what we print anyway.
    The command line imports rich only for what it draws (tables, progress).
    """
    module = sys.modules.get("structlog")
    if module is not None:
        return module
    hide = "rich" not in sys.modules
    if hide:
        sys.modules["rich"] = None  # type: ignore[assignment]  # "import rich" fails
    try:
        import structlog
    finally:
        if hide and sys.modules.get("rich", False) is None:
            del sys.modules["rich"]
    return structlog


def redirect_logging(stream: TextIO | None = None) -> None:
    """Write log events to ``stream`` from now on (default: the current
    ``sys.stderr``), keeping format and level: while a progress bar is shown,
    rich's stand-in for stderr prints them above the bar."""
    configure_logging(*_settings, stream=stream)


def logs_are_json() -> bool:
    """Whether log events go out as JSON lines (then they, not prose, carry errors)."""
    return _json


def redact(text: str) -> str:
    """``text`` with every registered secret (and its encoded forms) masked.

    For text that is stored (ledger errors, runs) or printed, not only logged.
    """
    result: str = _redactor.redact(text)
    return result


class RedactingStream:
    """A text stream that masks registered secrets in everything written to it.

    The command line wraps stdout and stderr in it, so that no printed text
    (tables, ``explain``, ``check-config --connect``, error messages) can carry
    a secret, whatever produced it. Everything but ``write`` is the wrapped
    stream's own (``isatty``, ``fileno``, ``encoding``...).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


#: Callables that see every event after redaction (the status page's run events).
_taps: list[Callable[[dict[str, Any]], None]] = []


def add_log_tap(tap: Callable[[dict[str, Any]], None]) -> None:
    """Call ``tap`` with a copy of every event logged from now on (secrets masked)."""
    _taps.append(tap)


def remove_log_tap(tap: Callable[[dict[str, Any]], None]) -> None:
    if tap in _taps:
        _taps.remove(tap)


def _tap(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    for tap in list(_taps):
        with contextlib.suppress(Exception):  # a tap must never break logging
            tap(dict(event_dict))
    return event_dict


def register_secrets(values: Iterable[str]) -> None:
    """Mask these values (and their URL-encoded forms) wherever they would appear."""
    _secrets.update(v for v in values if v)
    _redactor.update(_secrets)


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog for the whole process (idempotent).

    Cheap until something logs: when structlog is not imported yet, the
    settings are kept and applied by the first :func:`get_logger` (or
    :func:`activate`), so ``invoicesync sync --help`` does not import it.
    """
    global _json, _settings, _stream, _applied
    _settings = (fmt, level)
    _stream = stream
    target = stream or sys.stderr
    _json = fmt == "json" or (fmt == "auto" and not target.isatty())
    _applied = False
    if "structlog" in sys.modules:
        # Someone may log through structlog directly: it must see these settings now.
        activate()


def activate() -> None:
    """Apply the settings of the last :func:`configure_logging` to structlog now.

    Called before anything that might log through structlog itself (plugins
    loading, migrations): a structlog left unconfigured would print its
    development format to stdout.
    """
    global _applied
    if _applied:
        return
    structlog = _structlog()
    level = _settings[1]
    stream = _stream or sys.stderr
    use_json = _json
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    quiet: list[Any] = []
    if not use_json and stream.isatty() and level != "debug":
        # A person watching a terminal gets a progress bar, not two lines per
        # document; JSON (journal, pipes, files) keeps every event.
        quiet.append(_per_document_at_debug)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *quiet,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redactor,
            _tap,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _applied = True


PER_DOCUMENT_EVENTS = frozenset({"document.imported", "document.exported"})
"""Info events logged once per document; on a terminal they show only at debug level."""


def _per_document_at_debug(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    if event.get("level") == "info" and event.get("event") in PER_DOCUMENT_EVENTS:
        raise _structlog().DropEvent
    return event


def get_logger(**bound: Any) -> Any:
    """A logger with ids bound, e.g. ``get_logger(account="archive", run_id=...)``."""
    activate()
    return _structlog().get_logger().bind(**bound)
