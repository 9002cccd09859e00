"""Hypothesis strategies for documents, restrictions and clocks."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st
from invoicesync.daemon.restrictions.periods import day_start_utc
from invoicesync.plugins.models import Document

from .factories import make_doc

SOURCES = ["portal", "inbox", "mail"]
COMPANIES = ["acme", "globex", "initech"]
ZONES = ["Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Pacific/Apia", "UTC"]
PRESETS = [
    "current_month",
    "previous_month",
    "current_quarter",
    "previous_quarter",
    "current_year",
    "previous_year",
]
LO, HI = date(2022, 11, 1), date(2025, 2, 28)
days = st.dates(min_value=LO, max_value=HI)


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """Random instants, half of them within a few microseconds of a local midnight."""
    if draw(st.booleans()):
        return draw(
            st.datetimes(min_value=datetime(2022, 11, 1), max_value=datetime(2025, 2, 28))
        ).replace(tzinfo=UTC)
    tz = ZoneInfo(draw(st.sampled_from(ZONES)))
    start = day_start_utc(draw(days), tz)
    assert start is not None
    return start + timedelta(microseconds=draw(st.integers(-2, 2)))


TAGS = ["travel", "Travel", "PRIVATE", "private", "fuel", "office"]
TYPES = ["incoming_invoice", "sales_invoice", "credit_note", "receipt", "misc"]
STATUSES = ["paid", "partially_paid", "unpaid", "unknown"]
CURRENCIES = ["EUR", "USD", "CHF"]
amounts = st.decimals(min_value=-1000, max_value=20000, places=2, allow_nan=False)


@st.composite
def document(draw: st.DrawFn, index: int, attributes: bool = False) -> Document:
    """One document; with ``attributes``, random type, tags, amounts and the rest."""
    extra: dict[str, Any] = {}
    if attributes:
        extra = {
            "type": draw(st.sampled_from(TYPES)),
            "tags": draw(st.lists(st.sampled_from(TAGS), max_size=3)),
            "payment_status": draw(st.sampled_from(STATUSES)),
            "approved": draw(st.booleans()),
            "gross_amount": draw(st.none() | amounts),
            "currency": draw(st.none() | st.sampled_from(CURRENCIES)),
            "fields": draw(
                st.dictionaries(st.sampled_from(["cc", "dept"]), st.sampled_from(["1", "2"]))
            ),
            "filename": draw(st.sampled_from(["a.pdf", "b.PDF", "c.xml", "d.txt"])),
        }
    return make_doc(
        source=draw(st.sampled_from(SOURCES)),
        external_id=str(index),
        company=draw(st.sampled_from([None, *COMPANIES])),
        document_date=draw(st.none() | days),
        import_date=draw(instants()),
        **extra,
    )


@st.composite
def documents_(draw: st.DrawFn, max_size: int = 25, attributes: bool = False) -> list[Document]:
    count = draw(st.integers(0, max_size))
    return [draw(document(i, attributes)) for i in range(count)]


@st.composite
def attributes(draw: st.DrawFn) -> dict[str, Any]:
    result: dict[str, Any] = {}
    sub = st.lists
    if draw(st.booleans()):
        result["types"] = draw(sub(st.sampled_from(TYPES), min_size=1, max_size=3))
    if draw(st.booleans()):
        result["tags"] = {
            key: draw(sub(st.sampled_from(TAGS), max_size=2))
            for key in ("any_of", "all_of", "none_of")
            if draw(st.booleans())
        }
    if draw(st.booleans()):
        result["payment_status"] = draw(sub(st.sampled_from(STATUSES), min_size=1, max_size=2))
    if draw(st.booleans()):
        result["approved"] = draw(st.booleans())
    if draw(st.booleans()):
        bounds = sorted([draw(amounts), draw(amounts)])
        result["gross_amount"] = (
            dict(zip(["min", "max"], bounds, strict=True))
            if draw(st.booleans())
            else {draw(st.sampled_from(["min", "max"])): str(bounds[0])}
        )
    if draw(st.booleans()):
        result["currencies"] = draw(sub(st.sampled_from(CURRENCIES), min_size=1, max_size=2))
    if draw(st.booleans()):
        result["fields"] = {"cc": draw(sub(st.sampled_from(["1", "2"]), min_size=1))}
    if draw(st.booleans()):
        result["filename"] = {"glob": draw(sub(st.sampled_from(["*.pdf", "?.xml"]), min_size=1))}
    return result


@st.composite
def origins(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["include", "exclude"]))
    sources = draw(st.lists(st.sampled_from(SOURCES), unique=True, max_size=2))
    companies = draw(st.lists(st.sampled_from(COMPANIES), unique=True, max_size=2))
    if mode == "include" and not sources and not companies:
        companies = ["acme"]
    return {"mode": mode, "sources": sources, "companies": companies}


@st.composite
def periods(draw: st.DrawFn) -> dict[str, Any]:
    period: dict[str, Any] = {
        "relative_to": draw(st.sampled_from(["document_date", "import_date"])),
        "on_missing_date": draw(st.sampled_from(["exclude", "include"])),
    }
    form = draw(st.sampled_from(["since", "until", "between", "last", "preset"]))
    if form in ("since", "until"):
        period[form] = draw(days)
    elif form == "between":
        a, b = sorted([draw(days), draw(days)])
        period[form] = [a, b]
    elif form == "last":
        period[form] = f"{draw(st.integers(0, 40))}{draw(st.sampled_from('dwmy'))}"
    else:
        period[form] = draw(st.sampled_from(PRESETS))
    return period


@st.composite
def restrictions(
    draw: st.DrawFn, with_attributes: bool = False, dense: bool = False
) -> dict[str, Any]:
    """Random restriction blocks; ``dense`` gives each part a 4-in-5 chance."""
    present = st.integers(0, 4).map(bool) if dense else st.booleans()
    result: dict[str, Any] = {}
    if draw(present):
        result["origins"] = draw(origins())
    if draw(present):
        result["period"] = draw(periods())
    if with_attributes and draw(present):
        result["attributes"] = draw(attributes())
    return result


@dataclass(frozen=True)
class Scenario:
    """Documents, an evaluation time and a zone, with dates clustered near `now`."""

    docs: list[Document]
    now: datetime
    zone: str


@st.composite
def scenarios(draw: st.DrawFn, max_size: int = 25, attributes: bool = True) -> Scenario:
    """Documents whose dates sit near the windows' edges: a few days, weeks or
    months around `now` (in the scenario's zone), often exactly at a local
    midnight give or take a microsecond, so off-by-one bounds cannot hide."""
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    if draw(st.booleans()):
        now = draw(instants())
    else:
        # The last days of a month (31 March minus one month...), any time of day.
        some = draw(days)
        last = calendar.monthrange(some.year, some.month)[1] - draw(st.integers(0, 3))
        start = day_start_utc(some.replace(day=last), tz)
        assert start is not None
        now = start + timedelta(seconds=draw(st.integers(0, 86_399)))
    today = now.astimezone(tz).date()
    offsets = st.one_of(
        st.integers(-10, 10),
        st.integers(-400, 40),
        st.sampled_from([-7, -14, -28, -29, -30, -31, -59, -60, -61, -90, -91, -92, -365, -366]),
    )

    def near_day() -> date:
        return today + timedelta(days=draw(offsets))

    def near_instant() -> datetime:
        start = day_start_utc(near_day(), tz)
        assert start is not None
        return start + timedelta(
            microseconds=draw(st.one_of(st.integers(-2, 2), st.integers(-86_400_000_000, 0)))
        )

    docs = []
    for i in range(draw(st.integers(0, max_size))):
        base = draw(document(i, attributes))
        docs.append(
            base.model_copy(
                update={
                    "id": f"{base.source}/{i}",
                    "external_id": str(i),
                    "document_date": None if draw(st.integers(0, 5)) == 0 else near_day(),
                    "import_date": near_instant(),
                }
            )
        )
    return Scenario(docs, now, zone)
