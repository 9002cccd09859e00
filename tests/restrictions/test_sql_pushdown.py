"""The SQL pre-filter selects exactly the documents whose origins and period
checks pass -- on a real SQLite and a real PostgreSQL catalog, for random
documents, restrictions, clocks and time zones -- and include/exclude of the
same checklist partition the documents."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invoicesync.daemon.restrictions import Evaluator, RestrictionsConfig, compile_restrictions
from invoicesync.daemon.restrictions.periods import day_start_utc
from invoicesync.daemon.storage.schema import documents
from invoicesync.plugins.models import Document

from .factories import document_row, make_doc
from .strategies import PRESETS, ZONES, documents_, instants, origins, restrictions


def _compile(spec: dict[str, Any], zone: str) -> Evaluator:
    return compile_restrictions(RestrictionsConfig.model_validate(spec), ZoneInfo(zone))


def _store(engine: sa.Engine, docs: list[Document]) -> None:
    with engine.begin() as conn:
        conn.execute(documents.delete())
        if docs:
            conn.execute(documents.insert(), [document_row(d) for d in docs])


def _selected(engine: sa.Engine, evaluator: Evaluator, now: datetime) -> set[str]:
    where = evaluator.sql_filter(documents, now)
    query = sa.select(documents.c.id)
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        return set(conn.scalars(query))


def _pushed_checks_pass(evaluator: Evaluator, doc: Document, now: datetime) -> bool:
    decision = evaluator.evaluate(doc, now)
    return all(c.passed for c in decision.checks if c.name in ("origins", "period"))


def _edges(evaluators: list[Evaluator], now: datetime, tz: ZoneInfo) -> list[Document]:
    """Documents on and beside every window bound, imported a microsecond
    before and exactly at the local midnights around it."""
    days: set[date] = set()
    for evaluator in evaluators:
        window = evaluator.window(now)
        if window is not None:
            for bound in (window.first, window.last):
                if bound is not None and date(1900, 1, 1) < bound < date(2100, 1, 1):
                    days.update(bound + timedelta(days=d) for d in (-1, 0, 1, 2))
    edges = []
    for day in sorted(days):
        start = day_start_utc(day, tz)
        assert start is not None
        for delta in (-1, 0):
            edges.append(
                make_doc(
                    source="portal",
                    external_id=f"edge-{day}-{delta}",
                    document_date=day,
                    import_date=start + timedelta(microseconds=delta),
                )
            )
    return edges


DB_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@given(
    docs=documents_(),
    specs=st.lists(restrictions(), min_size=1, max_size=4),
    now=instants(),
    zone=st.sampled_from(ZONES),
)
@DB_SETTINGS
def test_sql_filter_selects_exactly_what_the_evaluator_passes(
    restrictions_db: sa.Engine,
    docs: list[Document],
    specs: list[dict[str, Any]],
    now: datetime,
    zone: str,
) -> None:
    evaluators = [_compile(spec, zone) for spec in specs]
    docs = docs + _edges(evaluators, now, ZoneInfo(zone))
    _store(restrictions_db, docs)
    for spec, evaluator in zip(specs, evaluators, strict=True):
        expected = {d.id for d in docs if _pushed_checks_pass(evaluator, d, now)}
        assert _selected(restrictions_db, evaluator, now) == expected, spec


@given(docs=documents_(), checklist=origins(), now=instants())
@DB_SETTINGS
def test_include_and_exclude_partition_the_documents(
    restrictions_db: sa.Engine,
    docs: list[Document],
    checklist: dict[str, Any],
    now: datetime,
) -> None:
    if not checklist["sources"] and not checklist["companies"]:
        checklist["companies"] = ["acme"]
    include = _compile({"origins": {**checklist, "mode": "include"}}, "UTC")
    exclude = _compile({"origins": {**checklist, "mode": "exclude"}}, "UTC")
    for doc in docs:
        assert include.accepts(doc, now) != exclude.accepts(doc, now)
    _store(restrictions_db, docs)
    included = _selected(restrictions_db, include, now)
    excluded = _selected(restrictions_db, exclude, now)
    assert included.isdisjoint(excluded)
    assert included | excluded == {d.id for d in docs}


def test_dst_and_month_edges_exhaustively(restrictions_db: sa.Engine) -> None:
    """Every local midnight (and a microsecond either side) around Berlin's DST
    changes and month ends, against every preset and some `last:` spans."""
    tz = ZoneInfo("Europe/Berlin")
    spans = [(date(2024, 2, 20), date(2024, 4, 5)), (date(2024, 9, 25), date(2024, 11, 5))]
    docs: list[Document] = []
    for first, last in spans:
        day = first
        while day <= last:
            start = day_start_utc(day, tz)
            assert start is not None
            for delta in (-1, 0, 1):
                docs.append(
                    make_doc(
                        external_id=f"{day}/{delta}",
                        import_date=start + timedelta(microseconds=delta),
                        document_date=day,
                    )
                )
            day += timedelta(days=1)
    _store(restrictions_db, docs)
    nows = [
        datetime(2024, 3, 31, 21, 59, 59, tzinfo=UTC),  # 23:59:59 CEST on 31 March
        datetime(2024, 3, 31, 22, 0, tzinfo=UTC),  # 00:00 CEST on 1 April
        datetime(2024, 4, 1, 9, 0, tzinfo=UTC),
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),  # the repeated hour, first pass
        datetime(2024, 10, 31, 22, 59, 59, tzinfo=UTC),  # last second of October, CET
        datetime(2024, 10, 31, 23, 0, tzinfo=UTC),  # 1 November
    ]
    checked = 0
    for relative_to in ("import_date", "document_date"):
        windows: list[dict[str, Any]] = [{"preset": p} for p in PRESETS]
        windows += [{"last": s} for s in ("1d", "1w", "1m", "3m")]
        windows += [{"between": ["2024-03-31", "2024-10-27"]}]
        for window in windows:
            evaluator = _compile(
                {"period": {"relative_to": relative_to, **window}}, "Europe/Berlin"
            )
            for now in nows:
                expected = {d.id for d in docs if evaluator.accepts(d, now)}
                assert _selected(restrictions_db, evaluator, now) == expected, (window, now)
                checked += 1
    assert checked == 2 * 11 * len(nows)
