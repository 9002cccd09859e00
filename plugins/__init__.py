"""The public plugin API of invoicesync: the only module plugins import.

Everything a connector or restriction-check plugin needs is here, and nothing
here changes incompatibly within a ``PLUGIN_API_VERSION`` major number::

    from invoicesync.plugins import (
        ExportItem, ExportResult, PermanentError, Target, TransientError, hookimpl,
    )

Connector tests use :mod:`invoicesync.plugins.testing` (the conformance suite
and test-data builders, also a pytest plugin). docs/plugins.md is the guide.
"""

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
