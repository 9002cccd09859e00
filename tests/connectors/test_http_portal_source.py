"""The http_portal source against a real local HTTP portal (tests/fixtures/portal_server.py)."""

# Fixtures imported from their module are "redefined" as test arguments.

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures.portal_server import Portal
from fixtures.source_helpers import RecordingLogger, pdf, run_fetch
from invoicesync.connectors_builtin.http_portal.source import (
    HttpPortalOptions,
    HttpPortalSource,
    _retry_after,
)
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import ConnectorContext, ConnectorError, DocumentType, TransientError
from pydantic import ValidationError

pytestmark = pytest.mark.server

TOKEN = "tok-3bd1c0ffee-portal-SECRET"

MAPPING = {
    "number": "invoice_no",
    "document_date": "date",
    "gross_amount": "total.gross",
    "currency": "total.currency",
    "company": "supplier.id",
    "tags": "labels",
    "type": {"field": "kind", "map": {"INV": "incoming_invoice", "CN": "credit_note"}},
    "fields": {"cost_center": "meta.cc"},
}


def seed(portal: Portal, n: int, start: int = 1) -> list[bytes]:
    contents = []
    for i in range(start, start + n):
        content = pdf(f"portal-{i}")
        contents.append(content)
        portal.add(
            f"D{i:03d}",
            content,
            invoice_no=f"R-{i}",
            date=f"2026-03-{i:02d}",
            total={"gross": f"{i}9.90", "currency": "eur"},
            supplier={"id": "acme"},
            labels=["telecom"],
            kind="INV" if i % 2 else "CN",
            meta={"cc": 4700 + i},
            updated_at=f"2026-04-01T10:00:{i:02d}Z",
        )
    return contents


def make_source(
    portal: Portal, tmp_path: Path, logger: RecordingLogger | None = None, **overrides: Any
) -> HttpPortalSource:
    options: dict[str, Any] = {
        "base_url": portal.url + "/api",
        "list_path": "/page/documents",
        "pagination": {"style": "page", "size_param": "per_page", "page_size": 2},
        "items_field": "data",
        "download_url_field": "download_url",
        "mapping": MAPPING,
        "timeout": 10,
        "retry": {"attempts": 3, "initial": 0.01, "max": 0.05},
    }
    options.update(overrides)
    context = ConnectorContext(id="portal", state_dir=tmp_path / "state", logger=logger)
    return HttpPortalSource("portal", HttpPortalOptions.model_validate(options), context)


def test_registered_as_builtin() -> None:
    assert load_plugins(entry_points=False).source_type("http_portal") is HttpPortalSource


def test_page_pagination_bearer_and_mapping(portal: Portal, tmp_path: Path) -> None:
    portal.auth = ("bearer", TOKEN)
    contents = seed(portal, 5)
    source = make_source(portal, tmp_path, auth={"type": "bearer", "token": TOKEN})
    source.check()
    run = run_fetch(source)
    assert run.ids == ["D001", "D002", "D003", "D004", "D005"]
    assert [s.content for s in run.stored] == contents
    assert [s.filename for s in run.stored] == ["invoice.pdf"] * 5
    meta = run.stored[0].doc.metadata
    assert meta.number == "R-1"
    assert meta.document_date == date(2026, 3, 1)
    assert meta.gross_amount == Decimal("19.90")
    assert meta.currency == "EUR"
    assert meta.company == "acme"
    assert meta.tags == frozenset({"telecom"})
    assert meta.type is DocumentType.INCOMING_INVOICE
    assert run.stored[1].doc.metadata.type is DocumentType.CREDIT_NOTE
    assert meta.fields == {"cost_center": "4701"}
    assert run.stored[0].media_type == "application/pdf"
    # 5 items at 2 per page: pages 1, 2, 3 (short page ends it).
    pages = [r.query["page"] for r in portal.requests_to("/api/page/documents")]
    assert pages[-3:] == ["1", "2", "3"]


def test_cursor_pagination_basic_auth(portal: Portal, tmp_path: Path) -> None:
    portal.auth = ("basic", "acct", TOKEN)
    contents = seed(portal, 5)
    source = make_source(
        portal,
        tmp_path,
        list_path="/cursor/documents",
        items_field="items",
        pagination={
            "style": "cursor",
            "cursor_field": "paging.next",
            "size_param": "limit",
            "page_size": 2,
        },
        auth={"type": "basic", "username": "acct", "password": TOKEN},
    )
    run = run_fetch(source)
    assert [s.content for s in run.stored] == contents
    cursors = [r.query.get("cursor") for r in portal.requests_to("/api/cursor/documents")]
    assert cursors == [None, "2", "4"]


def test_link_pagination_api_key_and_download_path(portal: Portal, tmp_path: Path) -> None:
    portal.auth = ("api_key", "X-Portal-Key", TOKEN)
    contents = seed(portal, 3)
    portal.documents[1].filename = None  # no Content-Disposition: named after the id
    source = make_source(
        portal,
        tmp_path,
        list_path="/link/documents",
        list_params={"limit": "2"},
        items_field=None,
        pagination={"style": "link"},
        download_url_field=None,
        download_path="/files/{id}",
        auth={"type": "api_key", "header": "X-Portal-Key", "value": TOKEN},
    )
    run = run_fetch(source)
    assert [s.content for s in run.stored] == contents
    assert [s.filename for s in run.stored] == ["invoice.pdf", "D002.pdf", "invoice.pdf"]
    assert len(portal.requests_to("/api/link/documents")) == 2


def test_since_is_incremental(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 3)
    source = make_source(portal, tmp_path, since_param="since", since_field="updated_at")
    first = run_fetch(source)
    assert len(first.stored) == 3
    assert json.loads(first.cursor or "")["since"] == "2026-04-01T10:00:03Z"
    assert all("since" not in r.query for r in portal.requests_to("/api/page/documents"))

    seed(portal, 1, start=4)
    second = run_fetch(source, first.cursor)
    assert second.ids == ["D004"]
    last = portal.requests_to("/api/page/documents")[-1]
    assert last.query["since"] == "2026-04-01T10:00:03Z"
    third = run_fetch(source, second.cursor)
    assert third.stored == []
    assert json.loads(third.cursor or "")["since"] == "2026-04-01T10:00:04Z"


def test_429_retry_after_is_respected(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 1)
    portal.fail("/api/page/documents", 429, **{"Retry-After": "1"})
    logger = RecordingLogger()
    source = make_source(portal, tmp_path, logger, retry={"attempts": 3, "initial": 0.01, "max": 2})
    started = time.monotonic()
    run = run_fetch(source)
    elapsed = time.monotonic() - started
    assert run.ids == ["D001"]
    assert elapsed >= 1.0, "Retry-After: 1 must be waited for"
    retries = [f for _, e, f in logger.events if e == "http_portal.retry"]
    assert retries and retries[0]["problem"] == "HTTP 429" and retries[0]["wait_s"] == 1.0


class RecordingStop(threading.Event):
    """A stop event that records how long the source asked to wait, without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout if timeout is not None else -1.0)
        return False


def test_retry_after_is_bounded_by_retry_max(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 1)
    portal.fail("/api/page/documents", 429, **{"Retry-After": "3600"})
    portal.fail("/api/files/D001", 503, **{"Retry-After": "7"})
    source = make_source(portal, tmp_path, retry={"attempts": 3, "initial": 0.01, "max": 0.5})
    stop = RecordingStop()
    source.context.stop = stop
    run = run_fetch(source)
    assert run.ids == ["D001"]
    assert stop.waits == [0.5, 0.5]  # both hints capped at retry.max


def test_backoff_grows_exponentially_with_jitter(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 1)
    portal.fail("/api/page/documents", 500, times=3)
    source = make_source(portal, tmp_path, retry={"attempts": 4, "initial": 1, "max": 3})
    stop = RecordingStop()
    source.context.stop = stop
    assert run_fetch(source).ids == ["D001"]
    first, second, third = stop.waits
    assert 0.5 <= first <= 1 and 1 <= second <= 2 and 2 <= third <= 3


def test_5xx_once_is_retried(portal: Portal, tmp_path: Path) -> None:
    contents = seed(portal, 3)
    portal.fail("/api/page/documents", 500)
    portal.fail("/api/files/D002", 503)
    run = run_fetch(make_source(portal, tmp_path))
    assert [s.content for s in run.stored] == contents


def test_5xx_forever_is_transient_with_hint(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 1)
    portal.fail("/api/page/documents", 503, times=10, **{"Retry-After": "7"})
    with pytest.raises(TransientError) as info:
        run_fetch(make_source(portal, tmp_path))
    assert "HTTP 503" in str(info.value)
    assert "gave up after 3 attempts" in str(info.value)
    assert f"{portal.url}/api/page/documents" in str(info.value)
    assert info.value.retry_after == 7
    assert len(portal.requests_to("/api/page/documents")) == 3


def test_malformed_json_names_url_and_position(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 1)
    portal.malformed.add("/api/page/documents")
    with pytest.raises(ConnectorError) as info:
        run_fetch(make_source(portal, tmp_path))
    text = str(info.value)
    assert f"{portal.url}/api/page/documents?" in text
    assert "malformed JSON at line 1 column 33" in text
    assert not isinstance(info.value, TransientError)


def test_download_breaking_off_once_is_retried(portal: Portal, tmp_path: Path) -> None:
    contents = seed(portal, 2)
    portal.truncate["D002"] = 1
    run = run_fetch(make_source(portal, tmp_path))
    assert [s.content for s in run.stored] == contents
    assert len(portal.requests_to("/api/files/D002")) == 2


def test_download_breaking_off_stores_nothing_partial(portal: Portal, tmp_path: Path) -> None:
    contents = seed(portal, 3)
    portal.truncate["D002"] = 99
    source = make_source(portal, tmp_path)
    from fixtures.source_helpers import FetchRun, commit

    run = FetchRun()
    gen = source.fetch(None)
    with pytest.raises(TransientError, match="broke off"):
        while True:
            commit(next(gen), run)
    assert [s.content for s in run.stored] == contents[:1]  # nothing of D002
    assert list((tmp_path / "state" / "tmp").iterdir()) == []
    # The next fetch (no cursor was returned) gets everything once it works.
    portal.truncate.clear()
    assert [s.content for s in run_fetch(source).stored] == contents


def test_bad_mapping_value_skips_only_that_item(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 4)
    portal.documents[1].data["date"] = "31.02.2026"
    portal.documents[2].data["kind"] = "WEIRD"
    portal.documents[3].data["total"] = {"gross": "12,50", "currency": "EUR"}
    run = run_fetch(make_source(portal, tmp_path))
    assert run.ids == ["D001"]
    reasons = {s.external_id: s.reason for s in run.skipped}
    assert set(reasons) == {"D002", "D003", "D004"}
    assert "'D002'" in reasons["D002"] and "document_date (date)" in reasons["D002"]
    assert "type (kind)" in reasons["D003"] and "'WEIRD'" in reasons["D003"]
    assert "gross_amount (total.gross)" in reasons["D004"]


def test_large_download_handed_over_as_file(portal: Portal, tmp_path: Path) -> None:
    big = pdf("big", 3 * 1024 * 1024)
    portal.add("BIG", big)
    run = run_fetch(make_source(portal, tmp_path, mapping={}))
    assert run.stored[0].was_path
    assert run.stored[0].content == big
    assert list((tmp_path / "state" / "tmp").iterdir()) == []


def test_api_key_as_query_parameter(portal: Portal, tmp_path: Path) -> None:
    portal.auth = ("api_key_query", "key", TOKEN)
    contents = seed(portal, 3)
    source = make_source(
        portal,
        tmp_path,
        list_path="/link/documents",
        list_params={"limit": "2"},
        items_field=None,
        pagination={"style": "link"},
        auth={"type": "api_key", "query_param": "key", "value": TOKEN},
    )
    run = run_fetch(source)
    assert [s.content for s in run.stored] == contents
    assert all(r.query.get("key") == TOKEN for r in portal.requests)
    assert all("x-api-key" not in r.headers for r in portal.requests)


def test_https_with_ca_file_and_untrusted_certificate(portal_factory: Any, tmp_path: Path) -> None:
    secure: Portal = portal_factory(tls=True)
    secure.auth = ("bearer", TOKEN)
    contents = seed(secure, 2)
    auth = {"type": "bearer", "token": TOKEN}
    source = make_source(secure, tmp_path, auth=auth, ca_file=str(secure.ca_file))
    assert [s.content for s in run_fetch(source).stored] == contents
    with pytest.raises(ConnectorError, match=r"not trusted.*ca_file") as info:
        make_source(secure, tmp_path, auth=auth).check()
    assert not isinstance(info.value, TransientError)
    unchecked = make_source(secure, tmp_path, auth=auth, verify_tls=False)
    assert len(run_fetch(unchecked).stored) == 2


def test_credentials_stay_on_the_portal_origin(portal_factory: Any, tmp_path: Path) -> None:
    api: Portal = portal_factory()
    cdn: Portal = portal_factory()  # another port: another origin
    api.auth = ("bearer", TOKEN)
    api.download_base = cdn.url
    contents = seed(api, 2)
    cdn.documents = api.documents  # the CDN serves the same files
    run = run_fetch(make_source(api, tmp_path, auth={"type": "bearer", "token": TOKEN}))
    assert [s.content for s in run.stored] == contents
    assert cdn.requests and all("authorization" not in r.headers for r in cdn.requests)
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api.requests)


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "bearer", "token": TOKEN},
        {"type": "basic", "username": "acct", "password": TOKEN},
        {"type": "api_key", "header": "X-Portal-Key", "value": TOKEN},
        {"type": "api_key", "query_param": "key", "value": TOKEN},
    ],
    ids=["bearer", "basic", "api_key", "api_key_query"],
)
def test_secret_never_leaks(portal: Portal, tmp_path: Path, auth: dict[str, str]) -> None:
    portal.auth = ("bearer", "the-right-one")  # ours is wrong
    seed(portal, 2)
    logger = RecordingLogger()
    source = make_source(portal, tmp_path, logger, auth=auth)
    texts = [repr(source.options), str(source.options), source.options.model_dump_json()]
    for action in (source.check, lambda: run_fetch(source)):
        with pytest.raises(ConnectorError) as info:
            action()
        assert "refused the credentials" in str(info.value)
        texts += [str(info.value), repr(info.value), info.exconly()]
    # With the right secret but a failing server, the retry logs and the
    # final error must not carry it either.
    portal.auth = None
    portal.fail("/api/page/documents", 500, times=10)
    with pytest.raises(TransientError) as info:
        run_fetch(source)
    texts += [str(info.value), repr(info.value)]
    portal.malformed.add("/api/page/documents")
    portal.faults.clear()
    with pytest.raises(ConnectorError) as info:
        run_fetch(source)
    assert "malformed JSON" in str(info.value)
    texts += [str(info.value), repr(info.value), logger.text()]
    assert "http_portal.retry" in logger.names()
    for text in texts:
        assert TOKEN not in text


def test_check_reports_wrong_shape(portal: Portal, tmp_path: Path) -> None:
    seed(portal, 1)
    with pytest.raises(ConnectorError, match="no 'documents' \\(items_field\\)"):
        make_source(portal, tmp_path, items_field="documents").check()
    with pytest.raises(ConnectorError, match="HTTP 404"):
        make_source(portal, tmp_path, list_path="/nope").check()


def test_option_validation() -> None:
    base: dict[str, Any] = {"base_url": "https://portal.example/api", "download_path": "/f/{id}"}
    assert HttpPortalOptions.model_validate(base).base_url == "https://portal.example/api/"
    bad: list[dict[str, Any]] = [
        {**base, "download_url_field": "url"},  # both download options
        {"base_url": "https://p.example"},  # neither
        {**base, "download_path": "/f/file"},  # no {id}
        {**base, "since_param": "since"},  # without since_field
        {**base, "mapping": {"number": "a..b"}},  # not a dotted path
        {**base, "mapping": {"type": {"field": "k", "map": {"X": "invoice"}}}},
        {**base, "base_url": "ftp://p.example"},
        {**base, "base_url": "https://user:pw@p.example"},
        {**base, "base_url": "http://p.example", "auth": {"type": "bearer", "token": "t"}},
        {**base, "pagination": {"style": "cursor"}},  # no cursor_field
        {**base, "auth": {"type": "oauth"}},
    ]
    for options in bad:
        with pytest.raises(ValidationError):
            HttpPortalOptions.model_validate(options)
    insecure = {
        **base,
        "base_url": "http://p.example",
        "auth": {"type": "bearer", "token": "t"},
        "allow_insecure": True,
    }
    assert HttpPortalOptions.model_validate(insecure)


def test_retry_after_parsing() -> None:
    now = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    assert _retry_after("5", now) == 5
    assert _retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert _retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert _retry_after("soon", now) is None
    assert _retry_after(None, now) is None
