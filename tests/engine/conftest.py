"""Fixtures of the engine tests: a Runtime over in-memory connectors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures import memory_connectors as mem
from fixtures.postgres_schema import pg_url_fixture
from fixtures.restrictions_db import restrictions_db
from invoicesync.daemon.config.loader import load_config
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.runtime import Runtime, open_runtime
from invoicesync.daemon.plugin_host import load_plugins


@pytest.fixture(autouse=True)
def clean_memory() -> Iterator[None]:
    """The memory connectors' portals and stores start empty in every test."""
    mem.reset()
    yield
    mem.reset()


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """``make(account_yaml="", dry_run=False)``: a Runtime with a ``memory`` source
    ``portal`` and a ``memory`` account ``out`` (``{company}/{number}.{ext}``);
    ``account_yaml`` adds lines to the account. Closed after the test."""
    opened: list[Runtime] = []
    registry = load_plugins(entry_points=False, extra=[mem])

    def make(account_yaml: str = "", *, dry_run: bool = False) -> Runtime:
        config = tmp_path / "invoicesync.yaml"
        config.write_text(
            "version: 1\ntimezone: Europe/Berlin\nstate: ./state\n"
            "companies: [{id: acme}, {id: other}]\n"
            "sources: [{id: portal, type: memory}]\n"
            "exports:\n"
            "  - id: out\n    type: memory\n"
            "    filename: '{company}/{number}.{ext}'\n"
            "    retry: {attempts: 3, initial: 0.01s, max: 0.05s}\n" + account_yaml
        )
        rt = open_runtime(load_config(config, registry), registry, Clock(mem.NOW), dry_run=dry_run)
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()


# The shared fixtures of this folder, available to its tests by name.
__all__ = [
    "pg_url_fixture",
    "restrictions_db",
]
