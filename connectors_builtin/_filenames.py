"""File names that come from remote parties (mail attachments, portal APIs).

Such names are hostile input: ``../../etc/passwd``, an RFC 2047 encoded
``..%2F``, a right-to-left override that turns ``fdp.exe`` into ``exe.pdf``
on screen, a 4 KB name, or nothing at all. :func:`safe_filename` reduces any of
them to a plain base name that is safe as a single path component.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

__all__ = ["clean_text", "safe_filename"]

# C0/C1 controls and DEL, plus the Unicode bidirectional overrides and
# isolates, which can disguise an extension on screen.
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
# Characters that Windows, SMB and several cloud drives refuse in names.
_RESERVED = re.compile(r'[<>:"|?*]')
_MAX_BYTES = 200


def clean_text(value: str, max_chars: int = 1000) -> str:
    """``value`` without control/bidi characters, whitespace collapsed, shortened."""
    value = _INVISIBLE.sub(" ", value)
    value = " ".join(value.split())
    return value[:max_chars]


def _fallback(index: int | str, media_type: str | None) -> str:
    ext = (mimetypes.guess_extension(media_type or "") or ".bin") if media_type else ".bin"
    return f"attachment-{index}{ext}"


def safe_filename(raw: str | None, index: int | str, media_type: str | None = None) -> str:
    """A safe base name for a remote file name, or ``attachment-<index>.<ext>``."""
    name = unicodedata.normalize("NFC", raw or "")
    # Only the last component counts: a sender does not choose our folders.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _INVISIBLE.sub("", name)
    name = _RESERVED.sub("_", name)
    name = name.strip().lstrip(".").strip()
    if not name or set(name) <= {"."}:
        return _fallback(index, media_type)
    encoded = name.encode("utf-8")
    if len(encoded) > _MAX_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext.encode("utf-8")) > 16:
            stem, ext = name, ""
        room = _MAX_BYTES - len(ext.encode("utf-8")) - (1 if ext else 0)
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip()
        name = f"{stem}.{ext}" if ext else stem
    return name or _fallback(index, media_type)
