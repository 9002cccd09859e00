"""Reading JSON sidecars: the metadata file beside a document in a folder.

A sidecar is a JSON object with the document fields of SPEC section 1::

    {"number": "RE-2025-0042", "type": "incoming_invoice",
     "document_date": "2025-03-01", "company": "acme", "tags": ["travel"],
     "gross_amount": "119.00", "currency": "EUR", "fields": {"cost_center": "4711"}}

Sidecars are user input (often written by scripts), so parsing is strict and
every error names the JSON path of the bad value (``tags[2]``,
``fields.cost_center``) without echoing the value itself. In detail:

- the file must be UTF-8 (a byte order mark is tolerated), at most 1 MiB, a
  JSON object without duplicate keys, without ``NaN``/``Infinity``, and no
  string anywhere may contain a NUL character;
- JSON numbers are read as exact decimals, never binary floats, so
  ``"gross_amount": 12.10`` is exactly 12.10; amounts must be finite, below
  10^15 and have at most 6 decimal places (checked by
  :class:`~invoicesync.plugins.DocumentMetadata` from the digits and exponent,
  so ``1e999999999`` is a clear error, not a ``decimal.Overflow``);
- an integer ``number`` or ``fields`` value (``"cost_center": 4711``) is taken
  as its decimal string, because that is what people mean;
- the keys the ``folder`` target writes in its sidecars besides the document
  fields (``id``, ``source``, ``external_id``, ``import_date``, ``filename``,
  ``media_type``, ``size``, ``sha256``, ``revision``) are accepted and
  ignored, so an exported folder can be imported again; any other unknown key
  is an error (a typo such as ``documnet_date`` must not pass silently);
- ``company`` in the sidecar overrides the source's ``company`` option, even
  when it is ``null``.
"""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from typing import Any

from invoicesync.plugins import Document, DocumentMetadata
from pydantic import ValidationError

__all__ = [
    "EXPORT_ONLY_KEYS",
    "MAX_SIDECAR_BYTES",
    "SidecarError",
    "parse_sidecar_bytes",
    "parse_sidecar_file",
]

MAX_SIDECAR_BYTES = 1024 * 1024
"""Larger sidecars are refused: real ones are a few hundred bytes."""

EXPORT_ONLY_KEYS = frozenset(Document.model_fields) - frozenset(DocumentMetadata.model_fields)
"""Keys of a catalog document that are not source metadata: ignored on import."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SidecarError(ValueError):
    """A sidecar that cannot be used; the message names the JSON path."""


def json_path(loc: tuple[str | int, ...]) -> str:
    """Render a location such as ``("fields", "cost center")`` as ``fields["cost center"]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            # json.dumps escapes control characters; long hostile keys are cut.
            shown = part if len(part) <= 40 else part[:40] + "..."
            out += f"[{json.dumps(shown)}]"
    return out or "(top level)"


def _reject_constant(name: str) -> Any:
    raise SidecarError(f"{name} is not a number a document field can hold")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SidecarError(f"{json_path((key,))}: key appears twice")
        result[key] = value
    return result


def _check_strings(value: Any, loc: tuple[str | int, ...]) -> None:
    """Refuse NUL characters anywhere: they truncate strings in C code and SQL."""
    if isinstance(value, str):
        if "\x00" in value:
            raise SidecarError(f"{json_path(loc)}: must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise SidecarError(f"{json_path(loc)}: a key contains a NUL character")
            _check_strings(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_strings(item, (*loc, i))


def _int_to_str(value: Any) -> Any:
    # bool is an int subclass; true is not a document number.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        known = ", ".join(sorted(DocumentMetadata.model_fields))
        return f"unknown field (known fields: {known})"
    if kind == "too_long" and "max_length" in error.get("ctx", {}):
        return f"too long (at most {error['ctx']['max_length']} characters)"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def parse_sidecar_bytes(raw: bytes, default_company: str | None) -> DocumentMetadata:
    """Parse sidecar content into metadata; raise :class:`SidecarError` if unusable."""
    if len(raw) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"larger than {MAX_SIDECAR_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SidecarError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise SidecarError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise SidecarError("JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with thousands of digits
        if isinstance(exc, SidecarError):
            raise
        raise SidecarError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SidecarError(f"(top level): expected a JSON object, got {type(data).__name__}")
    try:
        _check_strings(data, ())
    except RecursionError:
        raise SidecarError("JSON is nested too deeply") from None

    for key in EXPORT_ONLY_KEYS:
        data.pop(key, None)
    if "number" in data:
        data["number"] = _int_to_str(data["number"])
    if isinstance(data.get("fields"), dict):
        data["fields"] = {k: _int_to_str(v) for k, v in data["fields"].items()}
    if "company" not in data and default_company is not None:
        data["company"] = default_company

    try:
        meta = DocumentMetadata.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        shown = "; ".join(f"{json_path(tuple(e['loc']))}: {_message(e)}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise SidecarError(shown + more) from None
    return meta


def parse_sidecar_file(fd: int, default_company: str | None) -> DocumentMetadata:
    """Read and parse the sidecar open as ``fd`` (see the module documentation).

    The caller opened (and checked) the handle; it stays open. At most
    :data:`MAX_SIDECAR_BYTES` + 1 bytes are read, whatever the file's size.
    """
    chunks: list[bytes] = []
    left = MAX_SIDECAR_BYTES + 1
    try:
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise SidecarError(f"cannot read: {exc.strerror or exc}") from None
    return parse_sidecar_bytes(b"".join(chunks), default_company)
