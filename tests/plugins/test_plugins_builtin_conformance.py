"""Every built-in connector runs the connector conformance suite somewhere in tests/.

The suites themselves live beside each connector's tests (for example
tests/connectors/test_builtin_conformance.py); this module only makes sure no
built-in connector is left out when one is added.
"""

from __future__ import annotations

import ast
from pathlib import Path

from invoicesync.daemon.plugin_host import load_plugins

TESTS = Path(__file__).resolve().parents[1]


def _conformance_subjects() -> set[str]:
    """Names used in test classes that subclass one of the conformance suites."""
    names: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(b) for b in node.bases}
            if bases & {"TargetConformance", "SourceConformance"} or any(
                b.startswith("Test") and "Conformance" in b for b in bases
            ):
                names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    return names


def test_every_builtin_connector_runs_the_conformance_suite() -> None:
    registry = load_plugins(entry_points=False)
    builtins = [p for p in registry.plugins if p.builtin]
    classes = {registry.sources[t].__name__ for p in builtins for t in p.sources}
    classes |= {registry.targets[t].__name__ for p in builtins for t in p.targets}
    assert {"DemoSource", "FolderSource", "FolderTarget"} <= classes
    missing = sorted(classes - _conformance_subjects())
    assert not missing, (
        f"built-in connectors without a conformance test class: {missing}; subclass "
        "TargetConformance/SourceConformance for them (docs/plugins.md, section 5)"
    )
