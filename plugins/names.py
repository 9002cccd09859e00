"""Remote names: the one check every export target makes before it writes.

The engine hands a target sanitised names (SPEC section 3: no ``/`` inside a
component, no ``\\``, NUL or control characters, no leading dot, no ``..``,
at most 255 bytes per component). A target still treats the name as hostile
-- a bug or another plugin may hand it anything -- and refuses, rather than
repairs, a name that breaks those rules::

    from invoicesync.plugins import split_remote_name

    def export(self, item):
        parts = split_remote_name(item.remote_name)   # PermanentError if unsafe
        ...

Every built-in target uses it; so can yours.
"""

from __future__ import annotations

import re

from .errors import PermanentError

__all__ = ["CONTROL_CHARACTERS", "MAX_COMPONENT_BYTES", "split_remote_name"]

#: Unicode's control characters (category Cc): C0, DEL and C1. The one pattern
#: behind "no control characters" everywhere: metadata fields, names, headers.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: Bytes (UTF-8) per path component that every common file system and server accepts.
MAX_COMPONENT_BYTES = 255


def split_remote_name(
    name: str, *, forbidden: str = "\\", max_component_bytes: int = MAX_COMPONENT_BYTES
) -> list[str]:
    """Check a remote name and split it into its ``/``-separated components.

    Raises :class:`PermanentError` ("refusing remote name ...", naming the
    rule) for an empty or absolute name, text that is not valid UTF-8,
    control characters, a character of ``forbidden`` (a backslash unless the
    target says otherwise), an empty, ``.`` or ``..`` component, a hidden
    component (leading dot), or a component over ``max_component_bytes``.
    """
    shown = repr(name)[:300]
    if not isinstance(name, str) or not name:
        raise PermanentError("refusing remote name '': it is empty")
    if name.startswith("/"):
        raise PermanentError(f"refusing remote name {shown}: it must be a relative path")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PermanentError(f"refusing remote name {shown}: not valid UTF-8") from None
    if CONTROL_CHARACTERS.search(name):
        raise PermanentError(f"refusing remote name {shown}: it contains control characters")
    bad = sorted({c for c in name if c in forbidden})
    if bad:
        raise PermanentError(
            f"refusing remote name {shown}: this target does not accept {' '.join(bad)}"
        )
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise PermanentError(
                f"refusing remote name {shown}: empty, '.' or '..' path components"
            )
        if part.startswith("."):
            raise PermanentError(f"refusing remote name {shown}: hidden component {part!r}")
        if len(part.encode("utf-8")) > max_component_bytes:
            raise PermanentError(
                f"refusing remote name {shown}: a component is longer than "
                f"{max_component_bytes} bytes"
            )
    return parts
