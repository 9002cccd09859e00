"""The connector conformance suite and test helpers for connector authors.

This package is a pytest plugin (entry point ``pytest11``), so it is importable
in every pytest run; importing it has no side effects beyond defining classes.
Point the suite at a connector by subclassing and providing fixtures::

    from invoicesync.plugins.testing import TargetConformance, make_context

    class TestMyTargetConformance(TargetConformance):
        @pytest.fixture
        def target(self, tmp_path):
            return MyTarget("t", MyTarget.Options(...), make_context(tmp_path))

        @pytest.fixture
        def read_remote(self): ...      # name -> bytes | None

        @pytest.fixture
        def list_remote(self): ...      # () -> list[str]

        @pytest.fixture
        def broken_target(self, tmp_path): ...   # check() must raise ConnectorError

A test the connector genuinely cannot pass may be skipped only with a stated
reason: ``unsupported = {"test_name": "why not"}`` on the subclass.
See docs/plugins.md for the full contract of each fixture.
"""

from __future__ import annotations

import pytest

# The suites use plain ``assert``; have pytest rewrite them for readable failures
# (entry-point plugins only get this automatically for their top module).
pytest.register_assert_rewrite(
    "invoicesync.plugins.testing.source_suite",
    "invoicesync.plugins.testing.target_suite",
    "invoicesync.plugins.testing.helpers",
)

from .helpers import (  # noqa: E402
    SAMPLE_PDF,
    BreakingStream,
    make_context,
    make_document,
    make_export_item,
    make_source_document,
)
from .source_suite import SourceConformance  # noqa: E402
from .target_suite import HOSTILE_NAMES, TargetConformance  # noqa: E402

__all__ = [
    "HOSTILE_NAMES",
    "SAMPLE_PDF",
    "BreakingStream",
    "SourceConformance",
    "TargetConformance",
    "make_context",
    "make_document",
    "make_export_item",
    "make_source_document",
]
