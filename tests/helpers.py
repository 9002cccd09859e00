"""Small helpers shared by the test modules (importable because pytest's
``pythonpath`` includes ``tests/``)."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip a test that needs something this machine lacks -- but only outside CI.

    In CI (``CI=true``) the missing piece is an install step that .ci/run
    forgot, so the test fails instead of hiding it.
    """
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, package: str) -> str:
    """The path of an external program, or skip/fail naming its Debian package."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        skip_or_fail(f"{name} not found (apt-get install {package})")
    assert path is not None
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
