"""How import and export runs report a source or target that failed as a whole."""

from __future__ import annotations

import traceback
from typing import Any

import sqlalchemy as sa
from invoicesync.daemon.storage.database import is_damage
from invoicesync.plugins.errors import ConnectorError, TransientError


def describe_error(exc: BaseException) -> str:
    """One line for an unexpected error, fit for logs and printed output.

    A database error's text from SQLAlchemy carries the SQL statement and its
    parameters (document metadata, remote names): only the driver's own
    first line is kept, never the statement.
    """
    if is_damage(exc):
        orig = getattr(exc, "orig", exc)
        return (
            f"the state database is damaged ({orig}): stop invoicesync and restore it "
            "from a backup (see docs/operations.md)"
        )
    if isinstance(exc, sa.exc.SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        if orig is not None:
            lines = str(orig).strip().splitlines()
            return f"database error: {type(orig).__name__}: {lines[0] if lines else ''}".rstrip(
                ": "
            )
        return f"database error: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def report_connector_error(log: Any, exc: Exception) -> str:
    """Log ``connector.error`` for ``exc`` and return the text for the run's summary.

    Transient errors (the server may be back soon) are warnings; other
    connector errors are errors; a database error is logged without its SQL;
    anything else is a bug in a plugin, logged with a short traceback so that
    it can be reported.
    """
    if isinstance(exc, ConnectorError):
        transient = isinstance(exc, TransientError)
        (log.warning if transient else log.error)(
            "connector.error", error=str(exc), transient=transient
        )
        return str(exc)
    text = describe_error(exc)
    if isinstance(exc, sa.exc.SQLAlchemyError):
        # Not a plugin's bug, and its traceback would print the SQL.
        log.error("connector.error", error=text, transient=isinstance(exc, sa.exc.OperationalError))
        return text
    log.error(
        "connector.error",
        error=text,
        transient=False,
        traceback=traceback.format_exc(limit=5),
    )
    return text
