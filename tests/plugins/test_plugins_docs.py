"""docs/plugins.md stays true to the code: its reference section is generated."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import tomllib
from pathlib import Path
from types import ModuleType

import invoicesync.plugins as api
from invoicesync.plugins import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_plugin_reference", ROOT / "scripts" / "gen_plugin_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hook_reference_in_docs_is_up_to_date() -> None:
    gen = generator()
    current = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert gen.updated(current) == current, (
        "docs/plugins.md is out of date: run python scripts/gen_plugin_reference.py"
    )


def test_the_reference_covers_every_hook_and_public_name() -> None:
    section = generator().render()
    hooks = [n for n in dir(hookspecs) if n.startswith("invoicesync_")]
    assert hooks, "no hookspecs found"
    for name in hooks:
        assert f"#### `{name}(" in section, f"hook {name} is missing from the reference"
        assert inspect.getdoc(getattr(hookspecs, name)), f"hookspec {name} has no docstring"
    for name in api.__all__:
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.removeprefix(f"| `{name}` |").strip(" |"), f"{name} has no description"


def test_a_stale_reference_is_detected() -> None:
    gen = generator()
    current = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    stale = current.replace("#### `invoicesync_register_sources(", "#### `invoicesync_old(")
    assert stale != current and gen.updated(stale) == current


def test_the_guides_code_blocks_are_valid() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, re.DOTALL)
    kinds = [kind for kind, _ in blocks]
    assert kinds.count("python") >= 3 and "toml" in kinds
    for kind, code in blocks:
        if kind == "python":
            ast.parse(code)  # a SyntaxError names the line
        elif kind == "toml":
            data = tomllib.loads(code)
            assert data["project"]["entry-points"]["invoicesync"], "the entry point group"
