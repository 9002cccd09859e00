"""Remote file names from an account's ``filename`` template (SPEC section 3).

Templates use ``{placeholder}`` or ``{placeholder:strftime-format}`` for dates.
There is no attribute or index access and no conversion: a template is parsed
once at configuration time and rejected unless every field is a known
placeholder, so ``{number.__class__}`` can never reach ``str.format``.
Rendered values are sanitised per path component; a value can never introduce
a path separator, so only the template's own ``/`` create folders.
"""

from __future__ import annotations

import mimetypes
import re
import string
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePosixPath
from zoneinfo import ZoneInfo

from invoicesync.plugins.models import Document
from invoicesync.plugins.names import CONTROL_CHARACTERS, MAX_COMPONENT_BYTES

DEFAULT_TEMPLATE = (
    "{company}/{document_date:%Y}/{document_date:%Y-%m-%d}_{type}_{number|filename}.{ext}"
)

DATE_PLACEHOLDERS = frozenset({"document_date", "due_date", "import_date"})
PLACEHOLDERS = frozenset(
    {
        "id",
        "source",
        "company",
        "number",
        "type",
        "payment_status",
        "currency",
        "gross_amount",
        "filename",
        "ext",
        "sha8",
    }
    | DATE_PLACEHOLDERS
)
MISSING = "unknown"

# Bidirectional controls (embeddings, overrides, isolates, marks) make
# "a\u202eFDP.exe.pdf" display as "aexe.PDF": a name must read as it is.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Names Windows (and SMB shares, and many sync clients) refuse or treat as
# devices, whatever the extension: CON, con.txt, NUL.pdf, COM1, LPT9.tar.gz.
_WINDOWS_RESERVED = re.compile(
    r"^(?:CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3])"
    r"(?:\..*)?$",
    re.IGNORECASE,
)
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')
_STRFTIME_ALLOWED = re.compile(r"^(?:%[aAbBdHjmMpSUwWyYzZGuV%]|[^%/\\\x00-\x1f])*$")


@dataclass(frozen=True)
class _Field:
    literal: str
    name: str | None
    spec: str
    fallbacks: tuple[str, ...] = ()
    """Further placeholders tried in order when ``name`` has no value
    (``{number|filename}``)."""


class FilenameTemplate:
    """A parsed, validated filename template."""

    def __init__(self, source: str, parts: list[_Field]) -> None:
        self.source = source
        self._parts = parts

    @classmethod
    def parse(cls, template: str) -> FilenameTemplate:
        """Parse and validate; raises ValueError naming the offending placeholder."""
        if not template.strip():
            raise ValueError("the filename template is empty")
        if template.startswith("/"):
            raise ValueError("the filename template must be relative (no leading '/')")
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"invalid template: {exc} (write {{{{ and }}}} for braces)") from None
        parts: list[_Field] = []
        known = ", ".join(sorted(PLACEHOLDERS))
        for literal, name, spec, conversion in parsed:
            if name is None:
                parts.append(_Field(literal, None, ""))
                continue
            alternatives = name.split("|")
            for alternative in alternatives:
                if alternative == "" or not re.fullmatch(r"[a-z_0-9]+", alternative):
                    raise ValueError(
                        f"placeholder {{{name}}} is not allowed: no attribute or index access, "
                        f"only plain names ({known}), optionally with fallbacks "
                        "({number|filename})"
                    )
                if alternative not in PLACEHOLDERS:
                    raise ValueError(f"unknown placeholder {{{alternative}}}; known: {known}")
            if conversion:
                raise ValueError(
                    f"placeholder {{{name}!{conversion}}}: conversions are not allowed"
                )
            if spec and not all(a in DATE_PLACEHOLDERS for a in alternatives):
                raise ValueError(
                    f"placeholder {{{name}:{spec}}}: only dates take a format "
                    f"({', '.join(sorted(DATE_PLACEHOLDERS))})"
                )
            if spec and ("{" in spec or not _STRFTIME_ALLOWED.match(spec)):
                raise ValueError(
                    f"placeholder {{{name}:{spec}}}: expected a strftime format such as %Y-%m-%d"
                )
            parts.append(_Field(literal, alternatives[0], spec or "", tuple(alternatives[1:])))
        return cls(template, parts)

    @property
    def placeholders(self) -> set[str]:
        return {n for p in self._parts if p.name for n in (p.name, *p.fallbacks)}

    def render(self, document: Document, tz: ZoneInfo) -> str:
        """The sanitised relative POSIX path for ``document``."""
        values = placeholder_values(document, tz)
        out: list[str] = []
        for part in self._parts:
            out.append(part.literal)
            if part.name is None:
                continue
            value = values[part.name]
            for fallback in part.fallbacks:
                if value not in (None, "", MISSING):
                    break
                value = values[fallback]
            if isinstance(value, date | datetime):
                text = value.strftime(part.spec or "%Y-%m-%d")
            else:
                text = str(value) if value not in (None, "") else MISSING
            # A value must never create a folder: separators become '_'; and a
            # value of only dots ("..") must not merge with the extension's dot.
            text = str(text).replace("/", "_").replace("\\", "_")
            if text.strip(".") == "":
                text = "_" * len(text)
            out.append(text)
        return sanitize_path("".join(out))


def placeholder_values(document: Document, tz: ZoneInfo) -> dict[str, object]:
    """Every placeholder's raw value (dates as date objects, the rest as strings)."""
    stem, ext = split_filename(document.filename)
    if not ext:
        guessed = mimetypes.guess_extension(document.media_type or "") or ".bin"
        ext = guessed.lstrip(".")
    import_day = document.import_date.astimezone(tz).date()
    return {
        "id": document.id,
        "source": document.source,
        "company": document.company,
        "number": document.number,
        "type": document.type.value,
        "document_date": document.document_date or MISSING,
        "due_date": document.due_date or MISSING,
        "import_date": import_day,
        "payment_status": document.payment_status.value,
        "currency": document.currency,
        "gross_amount": None if document.gross_amount is None else str(document.gross_amount),
        "filename": stem,
        "ext": ext,
        "sha8": document.sha8,
    }


def split_filename(name: str) -> tuple[str, str]:
    """``"a.b.pdf"`` -> ``("a.b", "pdf")``; a leading dot is not an extension."""
    base = PurePosixPath(name.replace("\\", "/")).name
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        return base, ""
    return stem, ext


def sanitize_component(component: str) -> str:
    """Make one path component safe on every common file system and protocol."""
    text = unicodedata.normalize("NFC", component)
    text = _BIDI.sub("", CONTROL_CHARACTERS.sub("", text)).replace("/", "_").replace("\\", "_")
    text = text.strip()
    if text in ("", ".", ".."):
        text = MISSING if text == "" else "_" * len(text)
    # A leading dot would hide the file (and '..' prefixes look like traversal).
    text = re.sub(r"^\.+", lambda m: "_" * len(m.group(0)), text)
    return truncate_bytes(text, MAX_COMPONENT_BYTES)


def portable_component(component: str) -> str:
    """``component`` (already sanitised) made valid on every common file system.

    For accounts with ``portable_names``: no trailing dots or spaces (Windows
    drops them, so ``a.`` and ``a`` would be one file), none of ``<>:"|?*``,
    and no reserved device name (``CON``, ``con.txt``, ``COM1``...), which
    gets a leading ``_``. Idempotent.
    """
    text = _WINDOWS_FORBIDDEN.sub("_", component)
    stripped = text.rstrip(". ")
    if stripped != text:
        text = stripped + "_" if stripped else MISSING
    if _WINDOWS_RESERVED.match(text):
        text = "_" + text
    return truncate_bytes(text, MAX_COMPONENT_BYTES)


def name_key(remote_name: str) -> str:
    """What two names share when a case-insensitive file system sees one file.

    ``Café``, ``café``, ``CAFÉ`` (composed or not) all give ``café``: Unicode
    NFC, full case folding (``ß`` -> ``ss``), NFC again.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", remote_name).casefold())


class FoldedNames:
    """The names an account holds, by :func:`name_key`: who holds which.

    Used for accounts with ``portable_names``, where names that differ only
    in case (or Unicode composition) would overwrite each other on a
    case-insensitive target (Windows shares, macOS, many Nextcloud back-ends).
    Filled from the ledger at the start of a run (one run per account at a
    time) and kept up to date as the run reserves names; not thread-safe on
    its own (the exporter holds its lock).
    """

    def __init__(self, held: Iterable[tuple[str, str]] = ()) -> None:
        self._holder: dict[str, str] = {}
        for name, document_id in held:
            self._holder.setdefault(name_key(name), document_id)

    def free(self, document_id: str, names: Iterable[str]) -> Iterator[str]:
        """Those of ``names`` that no *other* document holds in any case."""
        for name in names:
            if self._holder.get(name_key(name), document_id) == document_id:
                yield name

    def hold(self, name: str, document_id: str) -> None:
        self._holder[name_key(name)] = document_id


def truncate_bytes(component: str, limit: int) -> str:
    """Shorten to ``limit`` UTF-8 bytes, keeping the extension and whole characters."""
    if len(component.encode("utf-8")) <= limit:
        return component
    stem, ext = split_filename(component)
    suffix = f".{ext}" if ext and len(ext.encode()) < 32 else ""
    if not suffix:
        stem = component
    budget = limit - len(suffix.encode("utf-8"))
    encoded = stem.encode("utf-8")[:budget]
    return encoded.decode("utf-8", errors="ignore").rstrip() + suffix


def sanitize_path(path: str) -> str:
    """Sanitise each component of a relative POSIX path; empty components vanish."""
    components = [c for c in path.split("/") if c.strip() != ""]
    if not components:
        return MISSING
    return "/".join(sanitize_component(c) for c in components)


def with_suffix_before_extension(remote_name: str, suffix: str) -> str:
    """``a/b.pdf`` + ``_1a2b3c4d`` -> ``a/b_1a2b3c4d.pdf`` (within the byte limit)."""
    folder, _, last = remote_name.rpartition("/")
    stem, ext = split_filename(last)
    new = f"{stem}{suffix}.{ext}" if ext else f"{last}{suffix}"
    if len(new.encode("utf-8")) > MAX_COMPONENT_BYTES:
        room = MAX_COMPONENT_BYTES - len(f"{suffix}.{ext}".encode())
        stem = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore")
        new = f"{stem}{suffix}.{ext}" if ext else f"{stem}{suffix}"
    return f"{folder}/{new}" if folder else new
