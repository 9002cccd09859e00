"""Benchmark of the restriction evaluator (docs/performance.md, "Restriction evaluator").

Usage::

    python bench/evaluator.py [--documents 1000000] [--sql-rows 1000000] [--db PATH]

Part 1 streams generated ``Document`` objects (in batches, so memory stays
flat) through one account's evaluator -- origins, a ``last: 3m`` period and
four attribute checks -- and reports verdicts per second for ``evaluate()``
(the explained verdict), ``accepts()`` (the verdict alone) and ``evaluate()``
with every reason rendered (what ``explain`` pays). Only evaluation is timed,
not the generation.

Part 2 fills an SQLite catalog (the project's schema, via its migrations)
with ``--sql-rows`` documents, then times a sync's selection: the pushed-down
WHERE clause, streaming the candidate rows, turning them into documents and
evaluating each; and, for comparison, the same without the pre-filter.
``--sql-rows 0`` skips it.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from invoicesync.daemon.restrictions import Evaluator, RestrictionsConfig, compile_restrictions
from invoicesync.daemon.storage.database import create_engine, migrate
from invoicesync.daemon.storage.schema import documents
from invoicesync.plugins.models import Document

TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SOURCES = [f"portal-{i}" for i in range(6)]
COMPANIES = [f"company-{i}" for i in range(20)]
TYPES = ["incoming_invoice", "sales_invoice", "credit_note", "receipt", "statement", "misc"]
TAGS = ["travel", "Travel", "office", "private", "fuel", "hotel", "software", "telecom"]
RESTRICTIONS: dict[str, Any] = {
    "origins": {"mode": "include", "sources": SOURCES[:3], "companies": COMPANIES[:5]},
    "period": {"relative_to": "document_date", "last": "3m"},
    "attributes": {
        "types": ["incoming_invoice", "credit_note", "receipt"],
        "tags": {"any_of": ["travel", "hotel"], "none_of": ["private"]},
        "gross_amount": {"min": 0, "max": 10000},
        "currencies": ["EUR"],
    },
}
BATCH = 10_000


def _fields(rng: random.Random, i: int) -> dict[str, Any]:
    """The catalog fields of generated document ``i`` (deterministic per seed)."""
    source = rng.choice(SOURCES)
    imported = NOW - timedelta(seconds=rng.randrange(0, 2 * 365 * 86400))
    return {
        "id": f"{source}/{i}",
        "source": source,
        "external_id": str(i),
        "company": rng.choice(COMPANIES) if rng.random() < 0.9 else None,
        "type": rng.choice(TYPES),
        "number": f"RE-{i}",
        "document_date": (imported - timedelta(days=rng.randrange(0, 20))).date()
        if rng.random() < 0.95
        else None,
        "due_date": None,
        "import_date": imported,
        "net_amount": None,
        "gross_amount": Decimal(rng.randrange(-5000, 1_500_000)) / 100
        if rng.random() < 0.9
        else None,
        "currency": rng.choice(["EUR", "EUR", "EUR", "USD", None]),
        "payment_status": rng.choice(["paid", "unpaid", "unknown"]),
        "approved": rng.random() < 0.5,
        "tags": frozenset(rng.sample(TAGS, rng.randrange(0, 3))),
        "note": None,
        "fields": {},
        "filename": f"{i}.pdf",
        "media_type": "application/pdf",
        "size": 12345,
        "sha256": "0" * 64,
        "revision": 1,
    }


def generate(count: int, seed: int = 1) -> Iterator[list[Document]]:
    """Batches of documents, built without validation (they are valid by construction)."""
    rng = random.Random(seed)
    for start in range(0, count, BATCH):
        yield [
            Document.model_construct(**_fields(rng, i))
            for i in range(start, min(start + BATCH, count))
        ]


class Timer:
    """Wall-clock and CPU time of this process; the machine is shared, so the
    CPU figure is the one that says what the code costs."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Timer:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c

    def rates(self, label: str, count: int) -> dict[str, float]:
        return {
            f"{label}_per_s_cpu": round(count / self.cpu),
            f"{label}_per_s_wall": round(count / self.wall),
        }


def bench_evaluate(evaluator: Evaluator, count: int) -> dict[str, float]:
    evaluate, accepts, explain = Timer(), Timer(), Timer()
    exported = 0
    for batch in generate(count):
        with evaluate:
            for doc in batch:
                if evaluator.evaluate(doc, NOW).export:
                    exported += 1
        with accepts:
            for doc in batch:
                evaluator.accepts(doc, NOW)
    explain_n = min(count, 100_000)
    for batch in generate(explain_n):
        with explain:
            for doc in batch:
                for check in evaluator.evaluate(doc, NOW).checks:
                    _ = check.reason
    return {
        "documents": count,
        "exported": exported,
        **evaluate.rates("evaluate", count),
        **accepts.rates("accepts", count),
        "explain_documents": explain_n,
        **explain.rates("evaluate_with_reasons", explain_n),
    }


def _row(doc: Document) -> dict[str, Any]:
    values = dict(doc.__dict__)
    values["tags"] = sorted(doc.tags)
    values["fingerprint"] = None
    values["updated_at"] = doc.import_date
    return values


def _document(row: sa.Row[Any]) -> Document:
    values = row._asdict()
    del values["fingerprint"], values["updated_at"]
    values["tags"] = frozenset(values["tags"])
    return Document.model_construct(**values)


def fill_catalog(engine: sa.Engine, rows: int) -> float:
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(documents.delete())
    for batch in generate(rows, seed=2):
        with engine.begin() as conn:
            conn.execute(documents.insert(), [_row(d) for d in batch])
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return round(time.perf_counter() - t0, 1)


def bench_sql(engine: sa.Engine, evaluator: Evaluator, rows: int) -> dict[str, float]:
    result: dict[str, float] = {"rows": rows}
    where = evaluator.sql_filter(documents, NOW)
    assert where is not None
    for label, query in (
        ("pushdown", sa.select(documents).where(where)),
        ("full_scan", sa.select(documents)),
    ):
        candidates = exported = 0
        timer = Timer()
        with timer, engine.connect() as conn:
            stream = conn.execution_options(yield_per=5000).execute(query)
            for row in stream:
                candidates += 1
                if evaluator.evaluate(_document(row), NOW).export:
                    exported += 1
        result[f"{label}_candidates"] = candidates
        result[f"{label}_exported"] = exported
        result[f"{label}_seconds_cpu"] = round(timer.cpu, 2)
        result[f"{label}_seconds_wall"] = round(timer.wall, 2)
        result.update(timer.rates(f"{label}_catalog_docs", rows))
    with engine.connect() as conn:
        plan = conn.execute(
            sa.text(
                "EXPLAIN QUERY PLAN "
                + str(
                    sa.select(documents.c.id)
                    .where(where)
                    .compile(engine, compile_kwargs={"literal_binds": True})
                )
            )
        ).fetchall()
    result["plan"] = "; ".join(str(r[-1]) for r in plan)  # type: ignore[assignment]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--sql-rows", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="SQLite file to (re)use; default: a temp file")
    args = parser.parse_args()

    config = RestrictionsConfig.model_validate(RESTRICTIONS)
    evaluator = compile_restrictions(config, TZ)
    report: dict[str, Any] = {"restrictions": RESTRICTIONS, "now": NOW.isoformat()}
    with open("/proc/loadavg") as f:
        report["loadavg_at_start"] = f.read().split()[0]
    report["evaluator"] = bench_evaluate(evaluator, args.documents)
    print(json.dumps(report["evaluator"], indent=2), flush=True)

    if args.sql_rows:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.db or Path(tmp) / "catalog.sqlite3"
            engine = create_engine(f"sqlite:///{path}")
            migrate(engine)
            with engine.connect() as conn:
                have = conn.scalar(sa.select(sa.func.count()).select_from(documents))
            fill = fill_catalog(engine, args.sql_rows) if have != args.sql_rows else 0.0
            report["sql"] = {"fill_seconds": fill, **bench_sql(engine, evaluator, args.sql_rows)}
            engine.dispose()
        print(json.dumps(report["sql"], indent=2, default=str), flush=True)
    with open("/proc/loadavg") as f:
        report["loadavg_at_end"] = f.read().split()[0]
    print(json.dumps({k: report[k] for k in ("loadavg_at_start", "loadavg_at_end")}))


if __name__ == "__main__":
    main()
