"""The public plugin API of invoicesync: the only module plugins import.

Everything a connector or restriction-check plugin needs is here, and nothing
here changes incompatibly within a ``PLUGIN_API_VERSION`` major number::

    from invoicesync.plugins import (
        ExportItem, ExportResult, PermanentError, Target, TransientError, hookimpl,
    )

Connector tests use :mod:`invoicesync.plugins.testing` (the conformance suite
and test-data builders, also a pytest plugin). docs/plugins.md is the guide.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checks import AttributeCheck, CheckOutcome
    from .connectors import (
        ConnectorContext,
        ConnectorOptions,
        ExportItem,
        ExportResult,
        FetchResult,
        RelativePath,
        Source,
        Target,
        WatchSpec,
    )
    from .errors import (
        ConfigurationError,
        ConnectorError,
        InvoicesyncError,
        PermanentError,
        PluginError,
        TransientError,
    )
    from .extractors import (
        EINVOICE_PRIORITY,
        Extraction,
        ExtractionError,
        ExtractionInput,
        Extractor,
    )
    from .hookspecs import hookimpl, hookspec
    from .models import (
        Document,
        DocumentMetadata,
        DocumentType,
        PaymentStatus,
        SkippedDocument,
        SourceDocument,
    )
    from .names import CONTROL_CHARACTERS, MAX_COMPONENT_BYTES, split_remote_name

PLUGIN_API_VERSION = "1.3"
"""Major.minor of this API. A plugin may check the major number at import."""

__all__ = [
    "CONTROL_CHARACTERS",
    "EINVOICE_PRIORITY",
    "MAX_COMPONENT_BYTES",
    "PLUGIN_API_VERSION",
    "AttributeCheck",
    "CheckOutcome",
    "ConfigurationError",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorOptions",
    "Document",
    "DocumentMetadata",
    "DocumentType",
    "ExportItem",
    "ExportResult",
    "Extraction",
    "ExtractionError",
    "ExtractionInput",
    "Extractor",
    "FetchResult",
    "InvoicesyncError",
    "PaymentStatus",
    "PermanentError",
    "PluginError",
    "RelativePath",
    "SkippedDocument",
    "Source",
    "SourceDocument",
    "Target",
    "TransientError",
    "WatchSpec",
    "hookimpl",
    "hookspec",
    "split_remote_name",
]


# Each name is imported from its module on first use (PEP 562), not all at
# once: ``invoicesync.plugins.errors`` is imported by nearly everything, and
# importing this package used to build every pydantic model of the API with it
# (a sixth of the command line's start-up, docs/performance.md "Start-up").
# ``from invoicesync.plugins import Target`` works exactly as before.
_HOME = {
    "AttributeCheck": "checks",
    "CheckOutcome": "checks",
    "ConnectorContext": "connectors",
    "ConnectorOptions": "connectors",
    "ExportItem": "connectors",
    "ExportResult": "connectors",
    "FetchResult": "connectors",
    "RelativePath": "connectors",
    "Source": "connectors",
    "Target": "connectors",
    "WatchSpec": "connectors",
    "ConfigurationError": "errors",
    "ConnectorError": "errors",
    "InvoicesyncError": "errors",
    "PermanentError": "errors",
    "PluginError": "errors",
    "TransientError": "errors",
    "EINVOICE_PRIORITY": "extractors",
    "Extraction": "extractors",
    "ExtractionError": "extractors",
    "ExtractionInput": "extractors",
    "Extractor": "extractors",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "Document": "models",
    "DocumentMetadata": "models",
    "DocumentType": "models",
    "PaymentStatus": "models",
    "SkippedDocument": "models",
    "SourceDocument": "models",
    "CONTROL_CHARACTERS": "names",
    "MAX_COMPONENT_BYTES": "names",
    "split_remote_name": "names",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once: later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
