"""Subject and body templates: SPEC section 3's placeholders, nothing more.

A template is parsed once, when the options are validated, so that a typo or
an attempt at attribute/index access (``{document.__class__}``, ``{tags[0]}``)
is a configuration error instead of a failure at the first export -- and so
that rendering can never reach anything but the plain strings listed here.
"""

from __future__ import annotations

import posixpath
import re
import string
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from invoicesync.plugins import Document

__all__ = ["PLACEHOLDERS", "Template", "document_values"]

#: Placeholders a template may use (SPEC section 3 plus the attachment name).
PLACEHOLDERS: dict[str, str] = {
    "id": "document id (<source>/<external id>)",
    "source": "source id",
    "company": "company profile id",
    "number": "document number",
    "type": "document type (incoming_invoice, receipt, ...)",
    "document_date": "date printed on the document (date format allowed)",
    "due_date": "due date (date format allowed)",
    "import_date": "first import, UTC (date format allowed)",
    "payment_status": "paid, partially_paid, unpaid or unknown",
    "currency": "ISO 4217 code",
    "gross_amount": "gross amount",
    "net_amount": "net amount",
    "filename": "original file name without extension",
    "ext": "original extension, no dot",
    "sha8": "first 8 hex digits of the content's SHA-256",
    "attachment": "file name of the attachment (last component of the remote name)",
    "remote_name": "the remote name the account's filename template produced",
    "account": "export account id",
}
_DATES = {"document_date", "due_date", "import_date"}
MISSING = "unknown"


@dataclass(frozen=True)
class _Field:
    name: str
    spec: str


class Template:
    """A parsed ``{placeholder}`` / ``{date_placeholder:strftime}`` template."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts: list[str | _Field] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(
                f"malformed template ({exc}); write {{{{ and }}}} for braces"
            ) from None
        for literal, name, spec, conversion in parsed:
            if literal:
                self._parts.append(literal)
            if name is None:
                continue
            if name == "" or name.isdigit():
                raise ValueError("positional fields like {} or {0} are not allowed; name one")
            if "." in name or "[" in name:
                raise ValueError(f"{{{name}}}: attribute and index access are not allowed")
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{name}}}; known: {', '.join(sorted(PLACEHOLDERS))}"
                )
            if conversion is not None:
                raise ValueError(f"{{{name}!{conversion}}}: conversions are not allowed")
            if spec and name not in _DATES:
                raise ValueError(f"{{{name}:{spec}}}: only dates take a format")
            if "{" in (spec or "") or "}" in (spec or ""):
                raise ValueError(f"{{{name}}}: nested fields are not allowed")
            self._parts.append(_Field(name, spec or ""))

    def render(self, values: dict[str, Any]) -> str:
        """Fill in ``values`` (from :func:`document_values`); missing ones read ``unknown``."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values.get(part.name)
            if value is None or value == "":
                out.append(MISSING)
            elif isinstance(value, date):
                if part.spec:
                    out.append(value.strftime(part.spec))
                else:
                    day = value.date() if isinstance(value, datetime) else value
                    out.append(day.isoformat())
            else:
                out.append(str(value))
        return "".join(out)


def document_values(document: Document, remote_name: str, account: str) -> dict[str, Any]:
    """The placeholder values for one document: plain strings, dates or None."""
    stem, dot, ext = document.filename.rpartition(".")
    if not dot or not stem:
        stem, ext = document.filename, ""
    return {
        "id": document.id,
        "source": document.source,
        "company": document.company,
        "number": document.number,
        "type": document.type.value,
        "document_date": document.document_date,
        "due_date": document.due_date,
        "import_date": document.import_date,
        "payment_status": document.payment_status.value,
        "currency": document.currency,
        "gross_amount": document.gross_amount,
        "net_amount": document.net_amount,
        "filename": stem,
        "ext": ext,
        "sha8": document.sha8,
        "attachment": posixpath.basename(remote_name),
        "remote_name": remote_name,
        "account": account,
    }


_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def header_safe(text: str) -> str:
    """One line for a mail header: control characters (CR, LF...) become spaces."""
    return _HEADER_UNSAFE.sub(" ", text).strip()
