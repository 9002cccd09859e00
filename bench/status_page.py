"""Server time of the status pages on a large catalog (default 100,000 documents).

Fills a fresh SQLite state folder directly (documents, revisions, ledger rows:
most documents exported to ``archive``, some failed and rejected, the rest
excluded by its type restriction or pending), then times each page through
the ASGI application in-process (Starlette's test client: no network, so
the figure is the server's time). Each URL is fetched ``--repeat`` times;
the first, the median and the slowest wall-clock time and the median CPU
time are printed in milliseconds, as JSON.

    python bench/status_page.py [--documents 100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from invoicesync.daemon.config.loader import load_config
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.runtime import open_runtime
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.daemon.storage.schema import document_revisions, documents, ledger, runs
from invoicesync.daemon.web.app import build_app
from invoicesync.daemon.web.host import WebHost
from invoicesync.daemon.web.metrics import Metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TYPES = ["incoming_invoice", "sales_invoice", "credit_note", "receipt", "statement", "misc"]
SOURCES = ["portal", "mail", "inbox", "scans"]
COMPANIES = [f"co{i:02}" for i in range(30)]


def fill(engine: Any, n: int, now: datetime) -> None:
    rng = random.Random(1)
    docs, revs, led = [], [], []
    for i in range(n):
        source = SOURCES[i % len(SOURCES)]
        doc_id = f"{source}/doc-{i:07}"
        sha = f"{i:064x}"
        kind = rng.choice(TYPES)
        imported = now - timedelta(minutes=n - i)
        docs.append(
            dict(
                id=doc_id,
                source=source,
                external_id=f"doc-{i:07}",
                company=rng.choice(COMPANIES),
                type=kind,
                number=f"N-{i}",
                document_date=date(2024, 1, 1) + timedelta(days=rng.randrange(1000)),
                due_date=None,
                import_date=imported,
                net_amount="100.00",
                gross_amount="119.00",
                currency="EUR",
                payment_status="paid",
                approved=True,
                tags=[],
                note=None,
                fields={},
                filename=f"doc-{i}.pdf",
                media_type="application/pdf",
                size=1000,
                sha256=sha,
                revision=1,
                fingerprint=None,
                updated_at=imported,
            )
        )
        revs.append(
            dict(
                document_id=doc_id,
                revision=1,
                sha256=sha,
                size=1000,
                filename=f"doc-{i}.pdf",
                imported_at=imported,
            )
        )
        eligible = kind in ("incoming_invoice", "credit_note")
        if eligible and i < n * 0.95:
            roll = rng.random()
            state = "exported" if roll > 0.02 else ("failed" if roll > 0.01 else "rejected")
            led.append(
                dict(
                    account="archive",
                    document_id=doc_id,
                    state=state,
                    revision=1,
                    sha256=sha,
                    remote_name=f"{doc_id}.pdf",
                    remote_ref=None,
                    exported_sha256=sha if state == "exported" else None,
                    attempts=0 if state == "exported" else 4,
                    last_error=None if state == "exported" else "HTTP 507 Insufficient Storage",
                    next_attempt_at=now + timedelta(days=1) if state == "failed" else None,
                    first_exported_at=imported if state == "exported" else None,
                    exported_at=imported if state == "exported" else None,
                    updated_at=imported,
                )
            )
    with engine.begin() as conn:
        for table, rows in ((documents, docs), (document_revisions, revs), (ledger, led)):
            for start in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[start : start + 5000])
        conn.execute(
            runs.insert(),
            [
                dict(
                    id=f"run-{k}",
                    kind="export" if k % 2 else "import",
                    subject="archive" if k % 2 else SOURCES[k % 4],
                    started_at=now - timedelta(hours=k),
                    finished_at=now - timedelta(hours=k) + timedelta(seconds=3),
                    status="ok",
                    counts={"exported": 3},
                    error=None,
                )
                for k in range(500)
            ],
        )


def timed(client: TestClient, url: str, repeat: int) -> dict[str, float]:
    """Wall-clock and CPU milliseconds per request (CPU: the whole process, so a
    loaded machine's waiting is left out)."""
    times, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {
        "first_ms": round(times[0], 1),
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "median_cpu_ms": round(statistics.median(cpu), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="invoicesync-page-bench-") as tmp:
        root = Path(tmp)
        (root / "out").mkdir()
        cfg = root / "invoicesync.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "version": 1,
                    "timezone": "UTC",
                    "state": "./state",
                    "sources": [{"id": s, "type": "demo"} for s in SOURCES],
                    "exports": [
                        {
                            "id": "archive",
                            "type": "folder",
                            "options": {"path": "./out"},
                            "restrictions": {
                                "attributes": {"types": ["incoming_invoice", "credit_note"]}
                            },
                        }
                    ],
                }
            )
        )
        registry = load_plugins(entry_points=False)
        loaded = load_config(cfg, registry)
        rt = open_runtime(loaded, registry, Clock())
        now = datetime.now(UTC)
        started = time.perf_counter()
        fill(rt.engine, args.documents, now)
        fill_s = time.perf_counter() - started
        host = WebHost(lambda: rt, mode="serve")
        app = build_app(host, Metrics(host), auth=None, runs_shown=50)
        results: dict[str, Any] = {"documents": args.documents, "fill_s": round(fill_s, 1)}
        half = args.documents // 2
        middle = f"{SOURCES[half % len(SOURCES)]}/doc-{half:07}"
        host.account_counts(rt.config.export("archive"), wait=True)
        with TestClient(app) as client:
            pages = {
                "account first page": "/accounts/archive",
                "account filtered: status=exported&source=mail": (
                    "/accounts/archive?status=exported&source=mail"
                ),
                "account filtered: company=co07&from=2025-01-01&to=2025-03-31": (
                    "/accounts/archive?company=co07&from=2025-01-01&to=2025-03-31"
                ),
                "account filtered: status=rejected": "/accounts/archive?status=rejected",
                "account filtered: status=pending (evaluator)": "/accounts/archive?status=pending",
                "account filtered: status=excluded (evaluator)": (
                    "/accounts/archive?status=excluded"
                ),
                "account deep page: after=the middle": f"/accounts/archive?after={middle}",
                "document": f"/documents/{middle}",
                "runs": "/runs",
            }
            for name, url in pages.items():
                results[name] = timed(client, url, args.repeat)
            host.forget_counts()
            results["overview, before pending/excluded are counted"] = timed(client, "/", 1)
            host.forget_counts()
            started, started_cpu = time.perf_counter(), time.process_time()
            host.account_counts(rt.config.export("archive"), wait=True)
            results["pending/excluded count (background thread)"] = {
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "cpu_ms": round((time.process_time() - started_cpu) * 1000, 1),
            }
            results["overview"] = timed(client, "/", args.repeat)
            results["metrics"] = timed(client, "/metrics", args.repeat)
        rt.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
