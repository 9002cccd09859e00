"""Optional Python packages a connector needs (its ``requires``), found or missing.

A connector whose library is missing must fail when the configuration is
checked, naming the extra to install, and not at the first export (where
every document would fail with an ImportError marked transient).
"""

from __future__ import annotations

import importlib.util
from typing import Any


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False


def missing_requirements(connector: type[Any]) -> dict[str, str]:
    """``{module: what installs it}`` for each module in ``connector.requires`` not installed."""
    requires = getattr(connector, "requires", None) or {}
    return {module: hint for module, hint in requires.items() if not _importable(module)}


def install_hint(connector: type[Any], kind: str) -> str | None:
    """One sentence for a connector whose requirements are missing, else None."""
    missing = missing_requirements(connector)
    if not missing:
        return None
    modules = ", ".join(missing)
    packages = " ".join(sorted({f"'{hint}'" for hint in missing.values()}))
    return (
        f"the {connector.type_name} {kind} needs the Python package {modules}, "
        f"which is not installed: pip install {packages}"
    )
