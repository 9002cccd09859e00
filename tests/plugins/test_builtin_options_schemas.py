"""Every built-in connector's and check's options produce a JSON schema.

``load_plugins`` builds the schema of third-party plugins' options at start
(a broken one is named at once); the built-ins' are checked here instead, so
that a start does not build the options model of every connector nobody
configured (issue 13, docs/performance.md "Start-up").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from invoicesync.daemon.plugin_host import load_plugins

REGISTRY = load_plugins(entry_points=False)
BUILTINS = [
    *(("source", name, cls) for name, cls in REGISTRY.sources.items()),
    *(("target", name, cls) for name, cls in REGISTRY.targets.items()),
    *(("check", name, cls) for name, cls in REGISTRY.checks.items()),
]


@pytest.mark.parametrize(
    ("kind", "name", "cls"), BUILTINS, ids=[f"{k}:{n}" for k, n, _ in BUILTINS]
)
def test_builtin_options_have_a_json_schema(kind: str, name: str, cls: type) -> None:
    schema = cls.Options.model_json_schema()  # type: ignore[attr-defined]
    assert isinstance(schema, dict) and schema, (kind, name)


def test_loading_the_plugins_builds_no_connector_options_model() -> None:
    # A fresh interpreter: models built by other tests in this one do not count.
    code = (
        "import json\n"
        "from invoicesync.daemon.plugin_host import load_plugins\n"
        "r = load_plugins(entry_points=False)\n"
        "types = [*r.sources.values(), *r.targets.values()]\n"
        "print(json.dumps(sorted(c.type_name for c in types if c.Options.__pydantic_complete__)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
