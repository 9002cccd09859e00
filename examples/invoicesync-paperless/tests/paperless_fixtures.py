"""Fixtures: a fake Paperless-ngx server per test and targets pointed at it.

A module of its own (not conftest.py) so that these tests also run from the
invoicesync repository root, beside other test folders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_paperless import FakePaperless
from invoicesync.plugins.testing import make_context
from invoicesync_paperless import PaperlessOptions, PaperlessTarget


@pytest.fixture
def paperless() -> Iterator[FakePaperless]:
    server = FakePaperless().start()
    yield server
    server.stop()


MakeTarget = Callable[..., PaperlessTarget]


@pytest.fixture
def make_target(paperless: FakePaperless, tmp_path: Path) -> Iterator[MakeTarget]:
    """``make_target(**options)``: a target for the fake server; closed after the test."""
    made: list[PaperlessTarget] = []

    def make(**overrides: Any) -> PaperlessTarget:
        options: dict[str, Any] = {
            "url": paperless.url,
            "token": paperless.token,
            "poll_interval": 0.01,
            "task_timeout": 10,
        }
        options.update(overrides)
        target = PaperlessTarget(
            "paperless", PaperlessOptions.model_validate(options), make_context(tmp_path / "state")
        )
        made.append(target)
        return target

    yield make
    for target in made:
        target.close()
