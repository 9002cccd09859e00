"""Helpers for the HTTP endpoint's tests: configurations, scraping, crawling."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from prometheus_client.parser import text_string_to_metric_families

SIDECAR_NOTE = 'Look <script>alert("x")</script> & <b>bold</b>'


def web_config(
    tmp: Path,
    port: int,
    *,
    http: dict[str, Any] | None = None,
    exports: list[dict[str, Any]] | None = None,
    sources: list[dict[str, Any]] | None = None,
    demo_count: int = 24,
) -> Path:
    """demo + folder sources, a restricted folder account and one that takes all."""
    inbox = tmp / "inbox"
    inbox.mkdir(exist_ok=True)
    data = {
        "version": 1,
        "timezone": "UTC",
        "state": "./state",
        "log": {"format": "json", "level": "info"},
        "daemon": {
            "grace_period": "10s",
            "jitter": "0s",
            "http": {"listen": f"127.0.0.1:{port}", **(http or {})},
        },
        "companies": [{"id": "acme"}, {"id": "globex"}, {"id": "initech"}, {"id": "umbrella"}],
        "sources": sources
        if sources is not None
        else [
            {
                "id": "demo",
                "type": "demo",
                "schedule": {"every": "1h"},
                "options": {"count": demo_count, "seed": 7},
            },
            {
                "id": "inbox",
                "type": "folder",
                "schedule": {"every": "1h"},
                "options": {"path": "./inbox", "watch": True, "company": "acme"},
            },
        ],
        "exports": exports
        if exports is not None
        else [
            {
                "id": "archive",
                "type": "folder",
                "schedule": {"after_import": True},
                "options": {"path": "./archive"},
                "restrictions": {"attributes": {"types": ["incoming_invoice", "credit_note"]}},
            },
            {
                "id": "everything",
                "type": "folder",
                "schedule": {"after_import": True},
                "filename": "{source}/{filename}.{ext}",
                "options": {"path": "./everything"},
            },
        ],
    }
    cfg = tmp / "invoicesync.yaml"
    cfg.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return cfg


def drop_document(inbox: Path, name: str, note: str = SIDECAR_NOTE, **fields: Any) -> None:
    """A PDF-ish file with a sidecar (written first, so one import sees both)."""
    sidecar = {"type": "incoming_invoice", "number": name, "note": note, **fields}
    (inbox / f"{name}.json").write_text(json.dumps(sidecar), encoding="utf-8")
    (inbox / f"{name}.pdf").write_bytes(b"%PDF-1.4\n% " + name.encode() + b"\n%%EOF\n")


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> Any:
    """(status, headers with lower-case names, body text) of a GET; HTTP errors too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            head = {k.lower(): v for k, v in response.headers.items()}
            return response.status, head, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        head = {k.lower(): v for k, v in exc.headers.items()}
        return exc.code, head, exc.read().decode("utf-8", "replace")


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples parsed by prometheus_client: (name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(
    parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return parsed.get((name, tuple(sorted(labels.items()))))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src", "action") and value:
                self.links.append(value)


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.links


def crawl(base: str, headers: dict[str, str], limit: int = 400) -> dict[str, Any]:
    """Every page reachable from ``/`` on ``base`` (same host): url -> (status, headers, body)."""
    seen: dict[str, Any] = {}
    queue = [base + "/"]
    host = urlsplit(base).netloc
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen:
            continue
        answer = get(url, headers)
        seen[url] = answer
        status, head, body = answer
        if status == 200 and head.get("content-type", "").startswith("text/html"):
            for link in links(body):
                target = urljoin(url, link).split("#")[0]
                if urlsplit(target).netloc == host and target not in seen:
                    queue.append(target)
    return seen
