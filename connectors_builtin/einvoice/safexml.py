"""Parsing untrusted XML safely with lxml.

E-invoices arrive from strangers. The parser here never loads a DTD, never
expands an entity, never touches the network or the disk, refuses a
``<!DOCTYPE`` outright (an e-invoice has none; refusing it rules out XXE and
"billion laughs" whatever the parser flags do), and bounds size and depth.
"""

from __future__ import annotations

import io

from invoicesync.plugins import ExtractionError
from lxml import etree

#: Larger XML is refused before parsing (real e-invoices are kilobytes).
MAX_XML_BYTES = 20 * 1024 * 1024
#: Deeper nesting is refused while parsing (e-invoices nest about 10 levels).
MAX_DEPTH = 100

_DOCTYPE_MARKERS = (
    b"<!DOCTYPE",
    b"<!ENTITY",
    "<!DOCTYPE".encode("utf-16-le"),
    "<!DOCTYPE".encode("utf-16-be"),
    "<!ENTITY".encode("utf-16-le"),
    "<!ENTITY".encode("utf-16-be"),
)


def parse(data: bytes, where: str) -> etree._Element:
    """The root element of ``data``; ExtractionError naming ``where`` if unsafe or broken."""
    if len(data) > MAX_XML_BYTES:
        raise ExtractionError(
            f"{where}: {len(data) / 1_048_576:.1f} MB of XML is more than the "
            f"{MAX_XML_BYTES // 1_048_576} MB limit; not read"
        )
    if any(marker in data for marker in _DOCTYPE_MARKERS):
        raise ExtractionError(
            f"{where}: the XML declares a DTD or entities (<!DOCTYPE/<!ENTITY>); "
            "refused for safety, not read"
        )
    depth = 0
    root: etree._Element | None = None
    try:
        for event, element in etree.iterparse(
            io.BytesIO(data),
            events=("start", "end"),
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            no_network=True,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        ):
            if event == "start":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ExtractionError(
                        f"{where}: XML nested deeper than {MAX_DEPTH} levels; not read"
                    )
                if root is None:
                    root = element
            else:
                depth -= 1
    except etree.XMLSyntaxError as exc:
        raise ExtractionError(f"{where}: not well-formed XML ({_short(exc)})") from None
    if root is None:
        raise ExtractionError(f"{where}: empty XML document")
    tree = root.getroottree()
    if tree.docinfo.doctype:  # belt and braces: the byte scan above missed an encoding
        raise ExtractionError(f"{where}: the XML declares a DTD; refused for safety, not read")
    return root


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200]
