"""The copy-paste configurations in docs/connectors/{imap,http_portal}.md validate."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from invoicesync.connectors_builtin.http_portal.source import HttpPortalOptions
from invoicesync.connectors_builtin.imap.source import ImapOptions
from ruamel.yaml import YAML

DOCS = Path(__file__).resolve().parents[2] / "docs" / "connectors"
BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def option_sets(doc: str) -> list[dict[str, Any]]:
    """Every ``options:`` mapping in the YAML blocks of ``doc``."""
    found: list[dict[str, Any]] = []
    for block in BLOCK.findall((DOCS / doc).read_text(encoding="utf-8")):
        data = YAML(typ="safe").load(textwrap.dedent(block))
        if isinstance(data, dict) and "sources" in data:
            found += [entry["options"] for entry in data["sources"]]
        elif isinstance(data, dict) and "options" in data:
            found.append(data["options"])
    return found


@pytest.mark.parametrize(
    ("doc", "model", "expected"),
    [("imap.md", ImapOptions, 1), ("http_portal.md", HttpPortalOptions, 3)],
)
def test_documented_configurations_validate(doc: str, model: Any, expected: int) -> None:
    sets = option_sets(doc)
    assert len(sets) == expected
    for options in sets:
        model.model_validate(options)
