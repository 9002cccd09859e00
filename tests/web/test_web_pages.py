"""The status pages in-process (Starlette's test client) on a synced state folder.

The daemon's real server is exercised in test_web_daemon.py and, in a real
browser, in test_web_browser.py; these tests pin what each page shows, the
filters and keyset paging, escaping, parameter tampering and access control.
"""

from __future__ import annotations

import base64
import re
import threading
import warnings
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fixtures.cli import run_cli
from invoicesync.daemon.config.loader import load_config
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.runtime import Runtime, open_runtime
from invoicesync.daemon.engine.sync import sync
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.daemon.status import account_status
from invoicesync.daemon.web import queries
from invoicesync.daemon.web.app import PAGE_SIZE, build_app
from invoicesync.daemon.web.host import WebHost
from invoicesync.daemon.web.metrics import Metrics

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its test client; httpx works the same here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from .webtools import SIDECAR_NOTE, drop_document, links, metrics, sample, web_config


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("pages")
    cfg = web_config(tmp, 1, demo_count=130)
    drop_document(tmp / "inbox", "INV-<1>", gross_amount="12.50", currency="EUR")
    drop_document(tmp / "inbox", "INV-2", company="globex", document_date="2026-03-04")
    registry = load_plugins(entry_points=False)
    loaded = load_config(cfg, registry)
    rt = open_runtime(loaded, registry, Clock())
    result = sync(rt, ())
    assert result.ok
    host = WebHost(lambda: rt, mode="serve")
    for account in rt.config.exports:
        host.account_counts(account, wait=True)  # counted once, as the endpoint does at start
    app = build_app(host, Metrics(host), auth=None, runs_shown=50)
    with TestClient(app) as client:
        yield {"client": client, "rt": rt, "cfg": cfg, "tmp": tmp, "host": host}
    rt.close()


def text(html: str) -> str:
    """The visible text of a page, roughly: tags removed, entities decoded, spaces folded."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def doc_links(html: str) -> list[str]:
    return [unescape(href) for href in links(html) if href.startswith("/documents/")]


def test_overview_lists_every_source_and_account_with_the_status_counts(
    site: dict[str, Any],
) -> None:
    client, rt = site["client"], site["rt"]
    response = client.get("/")
    assert response.status_code == 200
    page = text(response.text)
    for source, documents in (("demo", 130), ("inbox", 2)):
        row = re.search(rf'<tr id="source-{source}">(.*?)</tr>', response.text, re.S)
        assert row is not None
        assert f">{documents}<" in row.group(1)
        assert "ok" in row.group(1) and "fresh" in row.group(1)
    for account in rt.config.exports:
        expected = account_status(rt, account)
        row = re.search(rf'<tr id="account-{account.id}">(.*?)</tr>', response.text, re.S)
        assert row is not None
        cells = re.findall(r'<td class="num"><a [^>]*>(\d+)</a></td>', row.group(1))
        assert cells[:4] == [
            str(expected.exported),
            str(expected.pending),
            str(expected.failed),
            str(expected.rejected),
        ]
    # archive takes two of seven types: excluded = documents it does not take
    archive = site["host"].account_counts(rt.config.export("archive"), wait=True)
    assert archive.exported + archive.excluded == 132
    assert archive.excluded > 0
    assert "serve: no scheduler" in page


def all_pages(client: TestClient, url: str) -> tuple[list[str], int]:
    """Follow the "next" links; every document id listed, and how many pages."""
    ids: list[str] = []
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        pages += 1
        for href in doc_links(response.text):
            ids.append(unquote(href.split("?")[0][len("/documents/") :]))
        found = re.search(r'<a id="next" href="([^"]+)"', response.text)
        url = unescape(found.group(1)) if found else ""
    return ids, pages


def test_account_pages_list_every_document_once_in_id_order(site: dict[str, Any]) -> None:
    client, rt = site["client"], site["rt"]
    ids, pages = all_pages(client, "/accounts/everything")
    everything = sorted(d.id for d in rt.catalog.iter_documents())
    assert ids == everything
    assert pages == -(-len(everything) // PAGE_SIZE)


@pytest.mark.parametrize("state", ["exported", "excluded"])
def test_status_filter_shows_only_that_state(site: dict[str, Any], state: str) -> None:
    client, rt = site["client"], site["rt"]
    account = rt.config.export("archive")
    evaluator = rt.evaluators["archive"]
    now = rt.clock.now()
    expected = sorted(
        d.id
        for d in rt.catalog.iter_documents()
        if (evaluator.evaluate(d, now).export) == (state == "exported")
    )
    ids, _pages = all_pages(client, f"/accounts/{account.id}?status={state}")
    assert ids == expected
    page = client.get(f"/accounts/{account.id}?status={state}").text
    assert set(re.findall(r'class="state state-(\w+)"', page)) == {state}


def test_source_company_and_period_filters(site: dict[str, Any]) -> None:
    client, rt = site["client"], site["rt"]
    docs = list(rt.catalog.iter_documents())
    ids, _ = all_pages(client, "/accounts/everything?source=inbox")
    assert ids == sorted(d.id for d in docs if d.source == "inbox")
    ids, _ = all_pages(client, "/accounts/everything?company=globex")
    assert ids == sorted(d.id for d in docs if d.company == "globex")
    assert "inbox/INV-2.pdf" in ids
    ids, _ = all_pages(client, "/accounts/everything?from=2026-03-01&to=2026-03-31")
    assert ids == sorted(
        d.id
        for d in docs
        if d.document_date and "2026-03-01" <= d.document_date.isoformat() <= "2026-03-31"
    )
    assert ids  # the sidecar's date at least


def test_sparse_pending_matches_page_by_bounded_scans(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter the evaluator decides examines at most SCAN_LIMIT rows per request."""
    monkeypatch.setattr(queries, "SCAN_LIMIT", 7)
    client, rt = site["client"], site["rt"]
    ids, pages = all_pages(client, "/accounts/archive?status=excluded")
    evaluator = rt.evaluators["archive"]
    now = rt.clock.now()
    assert ids == sorted(
        d.id for d in rt.catalog.iter_documents() if not evaluator.evaluate(d, now).export
    )
    assert len(ids) > 7 and pages >= len(ids) // 7
    assert "searched part of the catalog" in client.get("/accounts/archive?status=excluded").text


def test_document_page_shows_fields_revisions_and_explain_in_the_cli_words(
    site: dict[str, Any],
) -> None:
    client, cfg = site["client"], site["cfg"]
    doc_id = "inbox/INV-2.pdf"
    response = client.get(f"/documents/{doc_id}?account=archive")
    assert response.status_code == 200
    page = text(response.text)
    assert "globex" in page and "2026-03-04" in page
    assert re.search(r'<table id="revisions">.*<td class="num">1</td>', response.text, re.S)
    for account in ("archive", "everything"):
        cli = run_cli("explain", account, doc_id, config=cfg)
        assert cli.returncode == 0, cli.stderr
        for line in cli.stdout.splitlines():
            if line.strip() == "fields:":  # the page's heading says "Where the fields came from"
                continue
            assert line.strip() in page, f"{line.strip()!r} missing from the page"
    # the selected account comes first
    assert response.text.index('id="explain-archive"') < response.text.index(
        'id="explain-everything"'
    )


def test_catalog_text_is_escaped_never_markup(site: dict[str, Any]) -> None:
    client = site["client"]
    ids, _ = all_pages(client, "/accounts/everything?source=inbox")
    for doc_id in ids:
        html = client.get(f"/documents/{doc_id}").text
        assert "<script" not in html
        assert "<b>bold</b>" not in html
    html = client.get("/documents/inbox/INV-2.pdf").text
    assert "&lt;script&gt;" in html
    assert SIDECAR_NOTE in text(html)
    listing = client.get("/accounts/everything?source=inbox").text
    assert "INV-&lt;1&gt;" in listing and "INV-<1>" not in listing


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/accounts/nope", 404),
        ("/accounts/..%2F..%2Fetc", 404),
        ("/documents/demo/no-such-document", 404),
        ("/documents/" + "x" * 700, 404),
        ("/nowhere", 404),
        ("/../../etc/passwd", 404),
        ("/accounts/archive?status=bogus", 400),
        ("/accounts/archive?status=exported&status=failed", 400),
        ("/accounts/archive?source=nope", 400),
        ("/accounts/archive?company=%3Cscript%3E", 400),
        ("/accounts/archive?from=2026-02-30", 400),
        ("/accounts/archive?to=yesterday", 400),
        ("/accounts/archive?after=%00", 400),
        ("/accounts/archive?after=" + "z" * 700, 400),
        ("/accounts/archive?order=id;drop", 400),
        ("/documents/demo/inv-000001?account=nope", 400),
        ("/runs?kind=delete", 400),
        ("/runs?subject=../x", 400),
        ("/?x=1", 400),
        ("/metrics?name=x", 400),
    ],
)
def test_tampered_urls_are_refused(site: dict[str, Any], url: str, status: int) -> None:
    response = site["client"].get(url)
    assert response.status_code == status, (url, response.text[:200])


def test_the_page_is_read_only(site: dict[str, Any]) -> None:
    client = site["client"]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.request(method, "/accounts/archive").status_code == 405


def test_pages_have_no_javascript_and_a_strict_policy(site: dict[str, Any]) -> None:
    client = site["client"]
    for url in ("/", "/accounts/archive", "/documents/inbox/INV-2.pdf", "/runs"):
        response = client.get(url)
        assert "<script" not in response.text
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"


def test_runs_page_lists_the_runs(site: dict[str, Any]) -> None:
    client, rt = site["client"], site["rt"]
    page = client.get("/runs").text
    for run in rt.runs.recent(50):
        assert f'id="run-{run.id}"' in page
    only = client.get("/runs?kind=import&subject=demo").text
    assert re.findall(r'<tr id="run-', only) and "everything" not in text(only).split("Runs")[1]


def test_healthz_is_503_without_a_scheduler(site: dict[str, Any]) -> None:
    response = site["client"].get("/healthz")
    assert response.status_code == 503
    assert "no scheduler" in response.text


def test_metrics_parse_and_carry_the_state(site: dict[str, Any]) -> None:
    client, rt = site["client"], site["rt"]
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = metrics(response.text)
    counts = site["host"].account_counts(rt.config.export("archive"))
    assert sample(parsed, "invoicesync_account_documents", account="archive", state="exported") == (
        counts.exported
    )
    assert sample(parsed, "invoicesync_source_documents", source="demo") == 130
    assert sample(parsed, "invoicesync_source_stale", source="demo") == 0
    assert sample(parsed, "invoicesync_scheduler_running") == 0
    assert sample(parsed, "invoicesync_info", version="0.1.0", mode="serve") == 1
    last = sample(parsed, "invoicesync_source_last_success_timestamp_seconds", source="demo")
    finished = rt.runs.last("import", "demo").finished_at
    assert last is not None and abs(last - finished.timestamp()) < 1
    # a counter exists for every configured id from the start
    assert sample(parsed, "invoicesync_documents_exported_total", account="everything") == 0


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_access_control(site: dict[str, Any], scheme: str) -> None:
    host = site["host"]
    auth: dict[str, Any] = (
        {"bearer": "s3cret-token"}
        if scheme == "bearer"
        else {"basic": {"username": "ops", "password": "pa:ss wörd"}}
    )
    app = build_app(host, Metrics(host), auth=auth, runs_shown=10)
    good = (
        "Bearer s3cret-token"
        if scheme == "bearer"
        else "Basic " + base64.b64encode("ops:pa:ss wörd".encode()).decode()
    )
    bad = ["Bearer wrong", "Basic " + base64.b64encode(b"ops:nope").decode(), "Basic !!!", ""]
    with TestClient(app) as client:
        for url in ("/", "/metrics", "/accounts/archive", "/documents/inbox/INV-2.pdf"):
            refused = client.get(url)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].lower().startswith(scheme)
            for header in bad:
                assert client.get(url, headers={"Authorization": header}).status_code == 401
            assert client.get(url, headers={"Authorization": good}).status_code == 200
        # load balancers probe without credentials
        assert client.get("/healthz").status_code == 503


def test_runtime_swaps_are_followed(site: dict[str, Any]) -> None:
    """The host reads the runtime through a callable (the daemon swaps it on reload)."""
    rt: Runtime = site["rt"]
    current = [rt]
    host = WebHost(lambda: current[0], mode="serve")
    assert host.runtime is rt
    assert Path(host.runtime.state_dir) == Path(site["tmp"]) / "state"


def test_documented_metrics_and_alert_rules_match_the_endpoint(site: dict[str, Any]) -> None:
    """docs/monitoring.md: every metric it lists and every rule's metric is really served."""
    from fixtures.daemon_proc import MONITORING_DOC
    from ruamel.yaml import YAML

    doc = MONITORING_DOC.read_text(encoding="utf-8")
    rt = site["rt"]
    host = WebHost(lambda: rt, mode="daemon", started_at=rt.clock.now())
    with TestClient(build_app(host, Metrics(host), auth=None, runs_shown=5)) as client:
        served = client.get("/metrics").text
    names = {s[0] for s in metrics(served)} | {
        line.split()[2] for line in served.splitlines() if line.startswith("# TYPE")
    }
    section = doc.split("## Metrics", 1)[1].split("### Alert rules", 1)[0]
    listed = set(re.findall(r"`(invoicesync_[a-z_]+)`", section))
    assert listed and listed <= names, sorted(listed - names)
    block = re.search(r"<!-- prometheus-rules -->\n```yaml\n(.*?)```", doc, re.S)
    assert block is not None
    rules = YAML(typ="safe").load(block.group(1))["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {
        "InvoicesyncSourceStale",
        "InvoicesyncDocumentsRejected",
        "InvoicesyncRunsFailing",
    }
    for rule in rules:
        for name in re.findall(r"\b(invoicesync_[a-z_]+)", rule["expr"]):
            assert name in names, f"{rule['alert']} uses {name}, which /metrics does not serve"


def test_counts_never_hold_up_a_page(site: dict[str, Any]) -> None:
    """Pending and excluded are counted in the background: "…" until they are known."""
    rt = site["rt"]
    host = WebHost(lambda: rt, mode="serve")
    release = threading.Event()
    original = host._compute_counts

    def slow(account: Any) -> tuple[int, int]:
        release.wait(30)
        return original(account)

    host._compute_counts = slow  # type: ignore[method-assign]
    with TestClient(build_app(host, Metrics(host), auth=None, runs_shown=5)) as client:
        row = re.search(r'<tr id="account-archive">(.*?)</tr>', client.get("/").text, re.S)
        assert row is not None and "…" in row.group(1)
        parsed = metrics(client.get("/metrics").text)
        assert (
            sample(parsed, "invoicesync_account_documents", account="archive", state="pending")
            is None
        )
        assert sample(parsed, "invoicesync_account_documents", account="archive", state="exported")
        release.set()
        counts = host.account_counts(rt.config.export("archive"), wait=True)
        assert counts.pending == 0 and counts.excluded is not None and counts.excluded > 0
