"""The http_portal source passes the connector conformance suite against a local portal."""

# Fixtures imported from their module are "redefined" as test arguments.

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.portal_server import Portal
from fixtures.source_helpers import pdf
from invoicesync.connectors_builtin.http_portal.source import (
    HttpPortalOptions,
    HttpPortalSource,
)
from invoicesync.plugins.testing import SourceConformance, make_context

pytestmark = pytest.mark.server

TOKEN = "conformance-portal-token-77e1"


def _source(portal: Portal, tmp_path: Path, **overrides: Any) -> HttpPortalSource:
    options = {
        "base_url": portal.url + "/api",
        "list_path": "/cursor/documents",
        "items_field": "items",
        "pagination": {"style": "cursor", "cursor_field": "paging.next", "size_param": "limit",
                       "page_size": 2},
        "download_url_field": "download_url",
        "auth": {"type": "bearer", "token": TOKEN},
        "since_param": "since",
        "since_field": "updated_at",
        "mapping": {"number": "invoice_no"},
        "retry": {"attempts": 2, "initial": 0.01, "max": 0.02},
        **overrides,
    }  # fmt: skip
    return HttpPortalSource(
        "portal", HttpPortalOptions.model_validate(options), make_context(tmp_path / "s")
    )


def _add(portal: Portal, i: int) -> None:
    portal.add(f"D{i}", pdf(f"conf-{i}"), invoice_no=f"R-{i}", updated_at=f"2026-05-{i:02d}")


class TestHttpPortalSourceConformance(SourceConformance):
    @pytest.fixture
    def source(self, portal: Portal, tmp_path: Path) -> HttpPortalSource:
        portal.auth = ("bearer", TOKEN)
        for i in range(1, 6):
            _add(portal, i)
        return _source(portal, tmp_path)

    @pytest.fixture
    def add_document(self, portal: Portal) -> Callable[[], None]:
        return lambda: _add(portal, 6)

    @pytest.fixture
    def broken_source(self, portal: Portal, tmp_path: Path) -> HttpPortalSource:
        portal.auth = ("bearer", "the-right-token")
        _add(portal, 1)
        return _source(portal, tmp_path)

    @pytest.fixture
    def secret(self) -> str:
        return TOKEN
