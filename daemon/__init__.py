"""The invoicesync engine: configuration, catalog, ledger, restrictions, sync and CLI."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> str:
    # Looked up when first asked for (``--version``, ``plugins``, the status
    # page), not whenever a module of the daemon is imported: importlib.metadata
    # alone costs more than click (docs/performance.md, "Start-up").
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("invoicesync")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        value = "0.0.0+unknown"
    globals()["__version__"] = value
    return value
