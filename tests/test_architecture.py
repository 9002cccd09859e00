"""The import rules of docs/architecture.md ("Layers"), enforced.

The contracts live in pyproject.toml (``[tool.importlinter]``); this runs
import-linter's ``lint-imports`` on them, so a forbidden import fails the
suite (and CI) with the chain of imports that breaks the rule.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        found = shutil.which("lint-imports")
        if found is None:
            skip_or_fail("lint-imports not installed (pip install -e '.[test]')")
            return
        lint = Path(found)
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
