"""The public plugin API only grows: published hooks, arguments and names stay.

When you add a hook, an argument or a public name, add it here too; a test
failing here means a change would break installed plugins.
"""

from __future__ import annotations

import inspect

import invoicesync.plugins as api
from invoicesync.plugins import hookspecs

#: Every published hook with its arguments, in order (API 1.0).
PUBLISHED_HOOKS: dict[str, list[str]] = {
    "invoicesync_register_sources": [],
    "invoicesync_register_targets": [],
    "invoicesync_register_checks": [],
    "invoicesync_register_extractors": [],  # API 1.2
    "invoicesync_document_imported": ["document", "source_id", "new_revision"],
    "invoicesync_document_exported": ["document", "account_id", "remote_name", "remote_ref"],
}

#: Every published name of ``invoicesync.plugins`` (API 1.0).
PUBLISHED_NAMES = {
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
    "WatchSpec",  # API 1.1
    "EINVOICE_PRIORITY",  # API 1.2
    "Extraction",  # API 1.2
    "ExtractionError",  # API 1.2
    "ExtractionInput",  # API 1.2
    "Extractor",  # API 1.2
    "CONTROL_CHARACTERS",  # API 1.2
    "MAX_COMPONENT_BYTES",  # API 1.2
    "split_remote_name",  # API 1.2
    "hookimpl",
    "hookspec",
}


def test_hooks_only_ever_gain_arguments() -> None:
    for name, published in PUBLISHED_HOOKS.items():
        spec = getattr(hookspecs, name, None)
        assert spec is not None, f"hook {name} was removed or renamed"
        args = list(inspect.signature(spec).parameters)
        assert args[: len(published)] == published, (
            f"hook {name} changed its arguments from {published} to {args}: "
            "hooks may only gain arguments, at the end"
        )


def test_every_hook_is_published_here_and_documented() -> None:
    current = {n for n in dir(hookspecs) if n.startswith("invoicesync_")}
    assert current == set(PUBLISHED_HOOKS), "record the new hook in PUBLISHED_HOOKS"
    for name in current:
        assert inspect.getdoc(getattr(hookspecs, name)), f"hook {name} needs a docstring"


def test_public_names_are_never_removed() -> None:
    assert set(api.__all__) >= PUBLISHED_NAMES, sorted(PUBLISHED_NAMES - set(api.__all__))
    assert set(api.__all__) == PUBLISHED_NAMES, "record the new public name in PUBLISHED_NAMES"
    for name in api.__all__:
        assert hasattr(api, name), f"__all__ names {name}, which does not exist"


#: Class attributes every connector has, with their API version.
PUBLISHED_CONNECTOR_ATTRIBUTES = {
    "type_name": "1.0",
    "Options": "1.0",
    "description": "1.0",
    "requires": "1.2",
}

#: Class attributes of targets only, with their API version.
PUBLISHED_TARGET_ATTRIBUTES = {"defers_durability": "1.3"}


def test_connector_class_attributes_stay() -> None:
    for cls in (api.Source, api.Target):
        for name in PUBLISHED_CONNECTOR_ATTRIBUTES:
            declared = {n for k in cls.__mro__ for n in getattr(k, "__annotations__", {})}
            assert name in declared, f"{cls.__name__}.{name}"
    declared = {n for k in api.Target.__mro__ for n in getattr(k, "__annotations__", {})}
    for name in PUBLISHED_TARGET_ATTRIBUTES:
        assert name in declared, f"Target.{name}"
    assert callable(api.Target.barrier)  # API 1.3


#: Class attributes of export targets only, with their API version.
PUBLISHED_TARGET_ATTRIBUTES = {"default_concurrency": "1.3"}


def test_target_class_attributes_stay() -> None:
    declared = {n for k in api.Target.__mro__ for n in getattr(k, "__annotations__", {})}
    for name in PUBLISHED_TARGET_ATTRIBUTES:
        assert name in declared, f"Target.{name}"
    # A 1.2 plugin's target, which never heard of it, exports one document at a time.
    assert api.Target.default_concurrency == 1


def test_the_api_version_is_major_dot_minor() -> None:
    major, minor = api.PLUGIN_API_VERSION.split(".")
    assert major == "1" and minor.isdigit()
