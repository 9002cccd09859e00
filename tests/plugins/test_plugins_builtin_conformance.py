"""Every built-in connector runs the conformance suite somewhere in tests/connectors.

The suites themselves live beside each connector's other tests (those that need
a server use its fixture); this test only makes sure none is forgotten.
"""

from __future__ import annotations

import ast
from pathlib import Path

from invoicesync.plugins.manager import load_plugins

CONNECTOR_TESTS = Path(__file__).parent.parent / "connectors"
SUITES = {"SourceConformance": "sources", "TargetConformance": "targets"}


def _suite_kind(
    classes: dict[str, ast.ClassDef], name: str, seen: frozenset[str] = frozenset()
) -> str | None:
    """"sources"/"targets" if class ``name`` derives from a suite (in its module)."""
    node = classes.get(name)
    if node is None or name in seen:
        return None
    for base in node.bases:
        base_name = base.id if isinstance(base, ast.Name) else None
        if base_name in SUITES:
            return SUITES[base_name]
        if base_name and (kind := _suite_kind(classes, base_name, seen | {name})):
            return kind
    return None


def _conformance_classes() -> dict[str, set[str]]:
    """Class names (lower-cased) subclassing a suite, per kind, in tests/connectors."""
    found: dict[str, set[str]] = {"sources": set(), "targets": set()}
    for module in CONNECTOR_TESTS.glob("test_*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        for name in classes:
            if (kind := _suite_kind(classes, name)) is not None:
                found[kind].add(name.lower())
    return found


def test_every_builtin_connector_has_a_conformance_class() -> None:
    registry = load_plugins(entry_points=False)
    classes = _conformance_classes()
    for plugin in (p for p in registry.plugins if p.builtin):
        for kind in ("sources", "targets"):
            for type_name in getattr(plugin, kind):
                wanted = type_name.replace("_", "").lower()
                assert any(wanted in c for c in classes[kind]), (
                    f"built-in {kind[:-1]} {type_name!r} has no conformance class in "
                    f"tests/connectors/ (subclass invoicesync.plugins.testing."
                    f"{'SourceConformance' if kind == 'sources' else 'TargetConformance'})"
                )
