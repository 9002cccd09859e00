"""The README's two environments stay apart (issue 10 item 7).

`scripts/demo` and the tour use `.venv`; `scripts/test` and `.ci/run` install
the test dependencies -- keyrings.alt's plain-text keyring among them -- into
`.venv-test`, so running the tests never changes where `invoicesync secret set`
stores a secret in the tour's environment.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _venv_default(script: str) -> str:
    match = re.search(r"^VENV=\$\{VENV:-([^}]+)\}", script, re.MULTILINE)
    assert match, "the script names its venv as VENV=${VENV:-...}"
    return match.group(1)


def test_test_dependencies_never_go_into_the_tour_venv() -> None:
    test_script = (ROOT / "scripts" / "test").read_text()
    assert _venv_default(test_script) == ".venv-test"
    assert ".venv/bin" not in test_script
    assert _venv_default((ROOT / "scripts" / "bootstrap").read_text()) == ".venv"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "export VENV=.venv-test" in ci
    # Everything .ci/run runs from a venv, it runs from the test venv.
    assert ".venv/bin" not in ci
    demo = (ROOT / "scripts" / "demo").read_text()
    assert "scripts/bootstrap\n" in demo and "VENV=" not in demo
    readme = (ROOT / "README.md").read_text()
    assert "creates `.venv-test` with the test dependencies" in readme
    assert "source .venv/bin/activate" in readme


def test_scripts_test_refuses_the_tour_venv() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "test"), "--collect-only"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "VENV": ".venv"},
    )
    assert proc.returncode == 2
    assert "do not go into .venv" in proc.stderr
