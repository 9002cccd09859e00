"""How import and export runs report a source or target that failed as a whole."""

from __future__ import annotations

import traceback
from typing import Any

from invoicesync.plugins.errors import ConnectorError, TransientError


def report_connector_error(log: Any, exc: Exception) -> str:
    """Log ``connector.error`` for ``exc`` and return the text for the run's summary.

    Transient errors (the server may be back soon) are warnings; other
    connector errors are errors; anything else is a bug in a plugin, logged
    with a short traceback so that it can be reported.
    """
    if isinstance(exc, ConnectorError):
        transient = isinstance(exc, TransientError)
        (log.warning if transient else log.error)(
            "connector.error", error=str(exc), transient=transient
        )
        return str(exc)
    text = f"{type(exc).__name__}: {exc}"
    log.error(
        "connector.error",
        error=text,
        transient=False,
        traceback=traceback.format_exc(limit=5),
    )
    return text
