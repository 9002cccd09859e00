"""The conformance suite, pointed at reference connectors that are correct."""

from __future__ import annotations

from invoicesync.plugins.testing import SourceConformance, TargetConformance
from reference_connectors import FolderTargetFixtures, MemorySourceFixtures


class TestReferenceFolderTarget(FolderTargetFixtures, TargetConformance):
    pass


class TestMemorySource(MemorySourceFixtures, SourceConformance):
    pass
