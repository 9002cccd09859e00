"""The evaluator, rule by rule: a table of cases with the edges, then the API."""

from __future__ import annotations

import calendar
import fnmatch
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invoicesync.connectors_builtin.checks import FilenameCheck
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.daemon.restrictions import (
    Check,
    Decision,
    RestrictionsConfig,
    compile_restrictions,
)
from invoicesync.daemon.restrictions.periods import day_start_utc
from invoicesync.plugins.checks import AttributeCheck, CheckOutcome
from invoicesync.plugins.hookspecs import hookimpl
from invoicesync.plugins.models import Document
from pydantic import BaseModel, ConfigDict

from .factories import BERLIN, at, make_doc, make_evaluator
from .strategies import Scenario, restrictions, scenarios

NOW = at("2024-06-30 12:00")
NEW_YORK = ZoneInfo("America/New_York")


def case(
    name: str,
    restrictions: dict[str, Any] | None,
    doc: dict[str, Any],
    export: bool,
    reason: str,
    *,
    now: datetime = NOW,
    tz: ZoneInfo = BERLIN,
) -> Any:
    return pytest.param(restrictions, doc, export, reason, now, tz, id=name)


ORIGINS = [
    case("no restrictions sync all", None, {}, True, "no restrictions"),
    case("empty block syncs all", {}, {}, True, "no restrictions"),
    case(
        "include by source",
        {"origins": {"sources": ["portal"]}},
        {"source": "portal"},
        True,
        "source 'portal' is in the include list",
    ),
    case(
        "include by company",
        {"origins": {"sources": ["other"], "companies": ["acme"]}},
        {"source": "portal", "company": "acme"},
        True,
        "company 'acme' is in the include list",
    ),
    case(
        "include, neither matches",
        {"origins": {"sources": ["other"], "companies": ["acme"]}},
        {"source": "portal", "company": "globex"},
        False,
        "neither source 'portal' nor company 'globex' is in the include list",
    ),
    case(
        "include by company, document without company",
        {"origins": {"companies": ["acme"]}},
        {"source": "portal"},
        False,
        "neither source 'portal' nor no company is in the include list",
    ),
    case(
        "exclude by source",
        {"origins": {"mode": "exclude", "sources": ["portal"]}},
        {"source": "portal", "company": "acme"},
        False,
        "source 'portal' is in the exclude list",
    ),
    case(
        "exclude by company (either list counts)",
        {"origins": {"mode": "exclude", "sources": ["x"], "companies": ["acme"]}},
        {"source": "portal", "company": "acme"},
        False,
        "company 'acme' is in the exclude list",
    ),
    case(
        "exclude, no company, not listed",
        {"origins": {"mode": "exclude", "companies": ["acme"]}},
        {"source": "portal"},
        True,
        "is in the exclude list",
    ),
    case(
        "empty exclude list excludes nothing",
        {"origins": {"mode": "exclude"}},
        {"source": "portal"},
        True,
        "neither",
    ),
]

P = "period"
PERIOD = [
    case(
        "since: on the day",
        {P: {"since": "2024-04-01"}},
        {"document_date": "2024-04-01"},
        True,
        "document date 2024-04-01 is within on or after 2024-04-01 (since: 2024-04-01)",
    ),
    case(
        "since: day before",
        {P: {"since": "2024-04-01"}},
        {"document_date": "2024-03-31"},
        False,
        "document date 2024-03-31 is before 2024-04-01 (since: 2024-04-01)",
    ),
    case(
        "since: future document date passes",
        {P: {"since": "2024-04-01"}},
        {"document_date": "2030-01-01"},
        True,
        "within",
    ),
    case(
        "until: on the day",
        {P: {"until": "2024-03-31"}},
        {"document_date": "2024-03-31"},
        True,
        "within on or before 2024-03-31",
    ),
    case(
        "until: day after",
        {P: {"until": "2024-03-31"}},
        {"document_date": "2024-04-01"},
        False,
        "is after 2024-03-31 (until: 2024-03-31)",
    ),
    case(
        "between: both ends inclusive (start)",
        {P: {"between": ["2024-02-29", "2024-03-31"]}},
        {"document_date": "2024-02-29"},
        True,
        "within 2024-02-29 to 2024-03-31",
    ),
    case(
        "between: end inclusive",
        {P: {"between": ["2024-02-29", "2024-03-31"]}},
        {"document_date": "2024-03-31"},
        True,
        "within",
    ),
    case(
        "between: day before",
        {P: {"between": ["2024-02-29", "2024-03-31"]}},
        {"document_date": "2024-02-28"},
        False,
        "before 2024-02-29",
    ),
    case(
        "last 3m: boundary day passes",
        {P: {"last": "3m"}},
        {"document_date": "2024-03-30"},
        True,
        "within 2024-03-30 to 2024-06-30 (last: 3m, today 2024-06-30 Europe/Berlin)",
    ),
    case(
        "last 3m: day before the boundary",
        {P: {"last": "3m"}},
        {"document_date": "2024-03-29"},
        False,
        "document date 2024-03-29 is before 2024-03-30 (last: 3m, today 2024-06-30 Europe/Berlin)",
    ),
    case(
        "last 3m: future document date fails",
        {P: {"last": "3m"}},
        {"document_date": "2024-07-01"},
        False,
        "is after 2024-06-30",
    ),
    case(
        "last 1m on 31 March reaches back to 29 February",
        {P: {"last": "1m"}},
        {"document_date": "2024-02-29"},
        True,
        "within 2024-02-29 to 2024-03-31",
        now=at("2024-03-31 10:00"),
    ),
    case(
        "last 1m on 31 March excludes 28 February",
        {P: {"last": "1m"}},
        {"document_date": "2024-02-28"},
        False,
        "before 2024-02-29",
        now=at("2024-03-31 10:00"),
    ),
    case(
        "last 1m on 31 March 2023 clamps to 28 February",
        {P: {"last": "1m"}},
        {"document_date": "2023-02-28"},
        True,
        "within 2023-02-28 to 2023-03-31",
        now=at("2023-03-31 10:00"),
    ),
    case(
        "last 1y from 29 February",
        {P: {"last": "1y"}},
        {"document_date": "2023-02-28"},
        True,
        "within 2023-02-28 to 2024-02-29",
        now=at("2024-02-29 10:00"),
    ),
    case(
        "last 2w",
        {P: {"last": "2w"}},
        {"document_date": "2024-06-15"},
        False,
        "before 2024-06-16",
    ),
    case(
        "last 0d is today only",
        {P: {"last": "0d"}},
        {"document_date": "2024-06-30"},
        True,
        "within 2024-06-30 to 2024-06-30",
    ),
    case(
        "today is the local day: 00:30 Berlin on 1 July is still 30 June in UTC",
        {P: {"last": "0d"}},
        {"document_date": "2024-07-01"},
        True,
        "today 2024-07-01 Europe/Berlin",
        now=at("2024-07-01 00:30"),
    ),
    case(
        "previous_month in March is February of a leap year",
        {P: {"preset": "previous_month"}},
        {"document_date": "2024-02-29"},
        True,
        "within 2024-02-01 to 2024-02-29 (preset: previous_month, today 2024-03-31 Europe/Berlin)",
        now=at("2024-03-31 23:59"),
    ),
    case(
        "current_month excludes the future month",
        {P: {"preset": "current_month"}},
        {"document_date": "2024-07-01"},
        False,
        "after 2024-06-30",
    ),
    case(
        "current_month accepts a later day this month",
        {P: {"preset": "current_month"}},
        {"document_date": "2024-06-30"},
        True,
        "within 2024-06-01 to 2024-06-30",
        now=at("2024-06-02 08:00"),
    ),
    case(
        "previous_quarter in January",
        {P: {"preset": "previous_quarter"}},
        {"document_date": "2023-10-01"},
        True,
        "within 2023-10-01 to 2023-12-31",
        now=at("2024-01-15 08:00"),
    ),
    case(
        "current_quarter",
        {P: {"preset": "current_quarter"}},
        {"document_date": "2024-03-31"},
        False,
        "before 2024-04-01",
    ),
    case(
        "current_year",
        {P: {"preset": "current_year"}},
        {"document_date": "2024-12-31"},
        True,
        "within 2024-01-01 to 2024-12-31",
    ),
    case(
        "previous_year",
        {P: {"preset": "previous_year"}},
        {"document_date": "2024-01-01"},
        False,
        "after 2023-12-31",
    ),
    case(
        "missing document date, on_missing_date exclude (default)",
        {P: {"last": "3m"}},
        {},
        False,
        "no document date; on_missing_date: exclude leaves it out",
    ),
    case(
        "missing document date, on_missing_date include",
        {P: {"last": "3m", "on_missing_date": "include"}},
        {},
        True,
        "no document date; on_missing_date: include lets it through",
    ),
    case(
        "import_date ignores a missing document date",
        {P: {"relative_to": "import_date", "last": "3m"}},
        {"import_date": datetime(2024, 6, 1, tzinfo=UTC)},
        True,
        "import date 2024-06-01 (imported 2024-06-01 00:00 UTC) is within",
    ),
    case(
        "import_date: 23:30 local on the last day, UTC already the next day (New York)",
        {P: {"relative_to": "import_date", "preset": "previous_month"}},
        {"import_date": datetime(2024, 6, 1, 3, 30, tzinfo=UTC)},
        True,
        "import date 2024-05-31 (imported 2024-06-01 03:30 UTC) is within 2024-05-01 to 2024-05-31",
        now=datetime(2024, 6, 15, 12, tzinfo=NEW_YORK),
        tz=NEW_YORK,
    ),
    case(
        "import_date: 00:30 local on the first day, UTC still the day before (Berlin)",
        {P: {"relative_to": "import_date", "preset": "previous_month"}},
        {"import_date": datetime(2024, 5, 31, 22, 30, tzinfo=UTC)},
        False,
        "import date 2024-06-01 (imported 2024-05-31 22:30 UTC) is after 2024-05-31",
        now=at("2024-06-15 12:00"),
    ),
    case(
        "import_date: 23:30 Berlin on 31 March (DST day, UTC 21:30) is in March",
        {P: {"relative_to": "import_date", "between": ["2024-03-01", "2024-03-31"]}},
        {"import_date": at("2024-03-31 23:30")},
        True,
        "import date 2024-03-31 (imported 2024-03-31 21:30 UTC)",
    ),
    case(
        "import_date: 00:30 Berlin on 31 March, before the spring-forward, is 30 March in UTC",
        {P: {"relative_to": "import_date", "since": "2024-03-31"}},
        {"import_date": datetime(2024, 3, 30, 23, 30, tzinfo=UTC)},
        True,
        "import date 2024-03-31 (imported 2024-03-30 23:30 UTC)",
    ),
    case(
        "import_date: the repeated hour on 27 October (first pass, CEST)",
        {P: {"relative_to": "import_date", "until": "2024-10-26"}},
        {"import_date": datetime(2024, 10, 27, 0, 30, tzinfo=UTC)},
        False,
        "import date 2024-10-27 (imported 2024-10-27 00:30 UTC) is after 2024-10-26",
    ),
    case(
        "import_date: 23:30 Berlin on 27 October (CET again) is still the 27th",
        {P: {"relative_to": "import_date", "until": "2024-10-27"}},
        {"import_date": datetime(2024, 10, 27, 22, 30, tzinfo=UTC)},
        True,
        "import date 2024-10-27 (imported 2024-10-27 22:30 UTC) is within",
    ),
    case(
        "import_date in the future of `now` fails last:",
        {P: {"relative_to": "import_date", "last": "1d"}},
        {"import_date": datetime(2024, 7, 2, tzinfo=UTC)},
        False,
        "is after 2024-06-30",
    ),
]

A = "attributes"
ATTRIBUTES = [
    case(
        "types: match",
        {A: {"types": ["credit_note", "receipt"]}},
        {"type": "receipt"},
        True,
        "type receipt is one of credit_note, receipt",
    ),
    case(
        "types: default misc",
        {A: {"types": ["credit_note"]}},
        {},
        False,
        "type misc is not one of credit_note",
    ),
    case(
        "tags any_of, differing only in case",
        {A: {"tags": {"any_of": ["Travel"]}}},
        {"tags": ["TRAVEL", "x"]},
        True,
        "has travel (any_of)",
    ),
    case(
        "tags any_of: none present",
        {A: {"tags": {"any_of": ["travel", "fuel"]}}},
        {"tags": ["office"]},
        False,
        "has none of any_of: travel, fuel",
    ),
    case(
        "tags any_of: document without tags",
        {A: {"tags": {"any_of": ["travel"]}}},
        {},
        False,
        "tags no tags: has none of any_of",
    ),
    case(
        "tags all_of: all present in other case",
        {A: {"tags": {"all_of": ["A", "b"]}}},
        {"tags": ["a", "B", "c"]},
        True,
        "has every tag of all_of",
    ),
    case(
        "tags all_of: one missing",
        {A: {"tags": {"all_of": ["a", "b"]}}},
        {"tags": ["a"]},
        False,
        "lacks b (all_of)",
    ),
    case(
        "tags none_of: present in other case",
        {A: {"tags": {"none_of": ["private"]}}},
        {"tags": ["Private"]},
        False,
        "has private (none_of)",
    ),
    case(
        "tags none_of: document without tags passes",
        {A: {"tags": {"none_of": ["private"]}}},
        {},
        True,
        "has none of the none_of tags",
    ),
    case(
        "tags: all three",
        {A: {"tags": {"any_of": ["x"], "all_of": [], "none_of": ["p"]}}},
        {"tags": ["x", "y"]},
        True,
        "has x (any_of); has none of the none_of tags",
    ),
    case(
        "payment_status match",
        {A: {"payment_status": ["paid", "partially_paid"]}},
        {"payment_status": "partially_paid"},
        True,
        "payment status partially_paid is one of",
    ),
    case(
        "payment_status default unknown",
        {A: {"payment_status": ["paid"]}},
        {},
        False,
        "payment status unknown is not one of paid",
    ),
    case(
        "approved: true wanted",
        {A: {"approved": True}},
        {"approved": False},
        False,
        "document is not approved; the account wants approved",
    ),
    case(
        "approved: false wanted",
        {A: {"approved": False}},
        {"approved": False},
        True,
        "document is not approved",
    ),
    case(
        "gross_amount: min inclusive",
        {A: {"gross_amount": {"min": "10.00"}}},
        {"gross_amount": "10", "currency": "EUR"},
        True,
        "gross amount 10 EUR is within min 10.00",
    ),
    case(
        "gross_amount: below min",
        {A: {"gross_amount": {"min": 10}}},
        {"gross_amount": "9.99"},
        False,
        "gross amount 9.99 is below the minimum 10",
    ),
    case(
        "gross_amount: max inclusive, exact decimal",
        {A: {"gross_amount": {"max": 0.3}}},
        {"gross_amount": "0.30"},
        True,
        "within max 0.3",
    ),
    case(
        "gross_amount: above max",
        {A: {"gross_amount": {"min": 0, "max": 10000}}},
        {"gross_amount": "10000.01"},
        False,
        "above the maximum 10000",
    ),
    case(
        "gross_amount: negative (credit note) below min 0",
        {A: {"gross_amount": {"min": 0}}},
        {"gross_amount": "-5"},
        False,
        "below the minimum 0",
    ),
    case(
        "gross_amount: missing amount fails",
        {A: {"gross_amount": {"min": 0}}},
        {},
        False,
        "no gross amount",
    ),
    case(
        "gross_amount: amount with no currency still compares",
        {A: {"gross_amount": {"max": 100}}},
        {"gross_amount": "50"},
        True,
        "gross amount 50 is within max 100",
    ),
    case(
        "currencies: amount with no currency fails",
        {A: {"currencies": ["EUR"]}},
        {"gross_amount": "50"},
        False,
        "no currency (wanted one of EUR)",
    ),
    case(
        "currencies: written lower case",
        {A: {"currencies": ["eur", "usd"]}},
        {"currency": "USD"},
        True,
        "currency USD is one of EUR, USD",
    ),
    case(
        "currencies: other",
        {A: {"currencies": ["EUR"]}},
        {"currency": "CHF"},
        False,
        "currency CHF is not one of EUR",
    ),
    case(
        "fields: match",
        {A: {"fields": {"cost_center": [4711, "4712"]}}},
        {"fields": {"cost_center": "4711"}},
        True,
        "field cost_center is '4711'",
    ),
    case(
        "fields: other value",
        {A: {"fields": {"cost_center": ["4711"]}}},
        {"fields": {"cost_center": "1"}},
        False,
        "field cost_center is '1', not one of 4711",
    ),
    case(
        "fields: missing",
        {A: {"fields": {"cost_center": "4711"}}},
        {},
        False,
        "field cost_center is missing",
    ),
    case(
        "fields: every key must hold",
        {A: {"fields": {"a": ["1"], "b": ["2"]}}},
        {"fields": {"a": "1", "b": "3"}},
        False,
        "field a is '1'; field b is '3', not one of 2",
    ),
    case(
        "filename glob (built-in plugin check), case-insensitive",
        {A: {"filename": {"glob": ["*.xml", "*.PDF"]}}},
        {"filename": "Rechnung.pdf"},
        True,
        "file name 'Rechnung.pdf' matches *.xml, *.PDF",
    ),
    case(
        "filename glob case-sensitive",
        {A: {"filename": {"glob": "*.PDF", "case_sensitive": True}}},
        {"filename": "Rechnung.pdf"},
        False,
        "does not match *.PDF",
    ),
]


@pytest.mark.parametrize(
    ("restrictions", "doc", "export", "reason", "now", "tz"), ORIGINS + PERIOD + ATTRIBUTES
)
def test_rule(
    restrictions: dict[str, Any] | None,
    doc: dict[str, Any],
    export: bool,
    reason: str,
    now: datetime,
    tz: ZoneInfo,
) -> None:
    evaluator = make_evaluator(restrictions, tz)
    document = make_doc(**doc)
    decision = evaluator.evaluate(document, now)
    assert decision.export is export
    assert evaluator.accepts(document, now) is export
    assert len(decision.checks) == 1
    assert reason in decision.checks[0].reason, decision.checks[0].reason
    assert (decision.deciding is None) is export


FULL = {
    "origins": {"mode": "include", "sources": ["portal"], "companies": ["acme"]},
    "period": {"relative_to": "document_date", "last": "3m"},
    "attributes": {
        "types": ["incoming_invoice", "credit_note"],
        "tags": {"any_of": ["travel"], "none_of": ["private"]},
        "gross_amount": {"min": 0, "max": 10000},
        "currencies": ["EUR"],
    },
}


def test_every_check_is_listed_in_order_and_the_first_failure_decides() -> None:
    evaluator = make_evaluator(FULL)
    doc = make_doc(
        source="mail",
        company="acme",
        type="incoming_invoice",
        document_date="2024-03-31",
        tags=["Travel", "private"],
        gross_amount="120.50",
        currency="USD",
    )
    decision = evaluator.evaluate(doc, NOW)
    assert [c.name for c in decision.checks] == [
        "origins",
        "period",
        "attributes.types",
        "attributes.tags",
        "attributes.gross_amount",
        "attributes.currencies",
    ]
    assert [c.passed for c in decision.checks] == [True, True, True, False, True, False]
    assert decision.export is False
    assert decision.deciding == decision.checks[3]
    assert (
        decision.summary
        == "attributes.tags: tags {private, Travel}: has travel (any_of); has private (none_of)"
    )
    assert str(decision.checks[5]) == "FAIL attributes.currencies: currency USD is not one of EUR"


def test_summary_of_an_export() -> None:
    evaluator = make_evaluator(FULL)
    doc = make_doc(
        type="credit_note",
        document_date="2024-06-30",
        tags=["travel"],
        gross_amount="0",
        currency="EUR",
    )
    decision = evaluator.evaluate(doc, NOW)
    assert decision.export and decision.deciding is None
    assert decision.summary == (
        "passes origins, period, attributes.types, attributes.tags, "
        "attributes.gross_amount, attributes.currencies"
    )
    assert make_evaluator(None).evaluate(doc, NOW).summary.startswith("no restrictions")


def test_now_changes_the_window_between_calls() -> None:
    evaluator = make_evaluator({"period": {"preset": "current_month"}})
    doc = make_doc(document_date="2024-06-15")
    assert evaluator.accepts(doc, at("2024-06-30 23:59"))
    assert not evaluator.accepts(doc, at("2024-07-01 00:00"))
    assert evaluator.accepts(doc, at("2024-06-01 00:00"))
    # A naive `now` is UTC: 2024-06-30 22:30 UTC is already July in Berlin.
    assert not evaluator.accepts(doc, datetime(2024, 6, 30, 22, 30))
    assert evaluator.window(datetime(2024, 6, 30, 21, 59)).first == date(2024, 6, 1)  # type: ignore[union-attr]


def test_reasons_are_lazy_but_stable() -> None:
    calls = []

    def reason() -> str:
        calls.append(1)
        return "because"

    check = Check("x", True, reason)
    assert calls == []
    assert check.reason == "because" and check.reason == "because"
    assert calls == [1]
    assert check == Check("x", True, "because")
    assert Decision(True, [check]).deciding is None


class _ScoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at_least: int


class _ScoreCheck(AttributeCheck):
    """A third-party check with its own options model: fields.score >= at_least."""

    key = "score"
    Options = _ScoreOptions

    def evaluate(self, document: Document) -> CheckOutcome:
        assert isinstance(self.options, _ScoreOptions)
        score = int(document.fields.get("score", "0"))
        return CheckOutcome(
            score >= self.options.at_least, f"score {score} vs {self.options.at_least}"
        )


class _ScorePlugin:
    @hookimpl
    def invoicesync_register_checks(self) -> list[type[AttributeCheck]]:
        return [_ScoreCheck]


class _BrokenCheck(AttributeCheck):
    key = "broken"

    def evaluate(self, document: Document) -> CheckOutcome:
        raise KeyError("score")


def test_a_raising_plugin_check_fails_the_document_not_the_sync() -> None:
    from invoicesync.daemon.restrictions import RestrictionsConfig, compile_restrictions

    checks: dict[str, type[AttributeCheck]] = {"broken": _BrokenCheck}
    config = RestrictionsConfig.model_validate(
        {"attributes": {"broken": None}}, context={"checks": checks}
    )
    evaluator = compile_restrictions(config, BERLIN, checks)
    decision = evaluator.evaluate(make_doc(), NOW)
    assert not decision.export and not evaluator.accepts(make_doc(), NOW)
    assert (
        decision.summary
        == "attributes.broken: the attributes.broken check raised KeyError: 'score'"
    )


def test_plugin_checks_through_the_hook() -> None:
    registry = load_plugins(entry_points=False, extra=[_ScorePlugin()])
    assert registry.checks["filename"] is FilenameCheck
    assert registry.checks["score"] is _ScoreCheck
    config = RestrictionsConfig.model_validate(
        {"attributes": {"score": {"at_least": 3}, "filename": {"glob": "*.pdf"}}},
        context={"checks": registry.checks},
    )
    evaluator = compile_restrictions(config, BERLIN, registry.checks)
    decision = evaluator.evaluate(make_doc(fields={"score": "2"}), NOW)
    assert [(c.name, c.passed, c.reason) for c in decision.checks] == [
        ("attributes.score", False, "score 2 vs 3"),
        ("attributes.filename", True, "file name 'invoice.pdf' matches *.pdf"),
    ]
    assert evaluator.accepts(make_doc(fields={"score": "3"}), NOW)


class _CountingCheck(AttributeCheck):
    key = "counted"
    calls: ClassVar[list[str]] = []

    def evaluate(self, document: Document) -> CheckOutcome:
        _CountingCheck.calls.append(document.id)
        return CheckOutcome(False, "counted and refused")


def test_a_check_is_evaluated_once_per_document() -> None:
    """``evaluate`` runs once per document, even when every reason is read
    (it used to run again to format the reason)."""
    checks: dict[str, type[AttributeCheck]] = {"counted": _CountingCheck}
    config = RestrictionsConfig.model_validate(
        {"attributes": {"counted": None, "types": ["misc"]}}, context={"checks": checks}
    )
    evaluator = compile_restrictions(config, BERLIN, checks)
    _CountingCheck.calls.clear()
    doc = make_doc()
    decision = evaluator.evaluate(doc, NOW)
    assert [str(c) for c in decision.checks] == [
        "PASS attributes.types: type misc is one of misc",
        "FAIL attributes.counted: counted and refused",
    ]
    assert decision.summary == "attributes.counted: counted and refused"
    assert _CountingCheck.calls == [doc.id]


def test_every_builtin_attribute_check_comes_through_the_hook() -> None:
    """The built-in attribute checks are registered like a third party's."""
    from invoicesync.daemon.restrictions.config import BUILTIN_ATTRIBUTES

    registry = load_plugins(entry_points=False)
    for key in (*BUILTIN_ATTRIBUTES, "filename"):
        assert issubclass(registry.checks[key], AttributeCheck), key
        assert registry.plugin_of("check", key) == "restriction-checks", key
    # Compiled from the registry, the built-ins decide as before.
    config = RestrictionsConfig.model_validate(
        {"attributes": {"currencies": "eur", "approved": True}},
        context={"checks": registry.checks},
    )
    evaluator = compile_restrictions(config, BERLIN, registry.checks)
    decision = evaluator.evaluate(make_doc(currency="EUR", approved=False), NOW)
    assert [(c.name, c.passed, c.reason) for c in decision.checks] == [
        ("attributes.approved", False, "document is not approved; the account wants approved"),
        ("attributes.currencies", True, "currency EUR is one of EUR"),
    ]


class _TakesTypes:
    class _Types(AttributeCheck):
        key = "types"

        def evaluate(self, document: Document) -> CheckOutcome:
            return CheckOutcome(True, "")

    @hookimpl
    def invoicesync_register_checks(self) -> list[type[AttributeCheck]]:
        return [self._Types]


def test_a_plugin_cannot_take_a_builtin_attribute_key() -> None:
    from invoicesync.plugins import PluginError

    with pytest.raises(PluginError, match="check key 'types' is registered twice"):
        load_plugins(entry_points=False, extra=[_TakesTypes()])


def _reference_window(period: dict[str, Any], today: date) -> tuple[date | None, date | None]:
    """SPEC section 2 written out the simplest way, independently of periods.py."""

    def months_back(n: int) -> date:
        year, month0 = divmod(today.year * 12 + today.month - 1 - n, 12)
        return date(year, month0 + 1, min(today.day, calendar.monthrange(year, month0 + 1)[1]))

    def month(year: int, month: int) -> tuple[date, date]:
        return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])

    if "since" in period:
        return period["since"], None
    if "until" in period:
        return None, period["until"]
    if "between" in period:
        return period["between"][0], period["between"][1]
    if "last" in period:
        n, unit = int(period["last"][:-1]), period["last"][-1]
        start = {
            "d": lambda: today - timedelta(days=n),
            "w": lambda: today - timedelta(days=7 * n),
            "m": lambda: months_back(n),
            "y": lambda: months_back(12 * n),
        }[unit]()
        return start, today
    preset = period["preset"]
    if preset == "current_month":
        return month(today.year, today.month)
    if preset == "previous_month":
        last = today.replace(day=1) - timedelta(days=1)
        return month(last.year, last.month)
    if preset.endswith("year"):
        year = today.year - (preset == "previous_year")
        return date(year, 1, 1), date(year, 12, 31)
    quarter = (today.month - 1) // 3 - (preset == "previous_quarter")
    year = today.year + (quarter < 0) * -1
    quarter %= 4
    return month(year, quarter * 3 + 1)[0], month(year, quarter * 3 + 3)[1]


def _reference(spec: dict[str, Any], doc: Document, now: datetime, tz: ZoneInfo) -> dict[str, bool]:
    """Each check's verdict, by check name."""
    result: dict[str, bool] = {}
    origins = spec.get("origins")
    if origins is not None:
        listed = doc.source in origins["sources"] or doc.company in origins["companies"]
        result["origins"] = listed == (origins["mode"] == "include")
    period = spec.get("period")
    if period is not None:
        if period["relative_to"] == "import_date":
            day: date | None = doc.import_date.astimezone(tz).date()
        else:
            day = doc.document_date
        if day is None:
            result["period"] = period["on_missing_date"] == "include"
        else:
            lo, hi = _reference_window(period, now.astimezone(tz).date())
            result["period"] = (lo is None or day >= lo) and (hi is None or day <= hi)
    attrs = spec.get("attributes") or {}
    tags = {t.lower() for t in doc.tags}
    amount = doc.gross_amount
    bounds = {k: Decimal(str(v)) for k, v in attrs.get("gross_amount", {}).items()}
    tag_spec = attrs.get("tags", {})
    checks = {
        "types": lambda: doc.type in attrs["types"],
        "tags": lambda: (
            (not tag_spec.get("any_of") or any(t.lower() in tags for t in tag_spec["any_of"]))
            and all(t.lower() in tags for t in tag_spec.get("all_of", []))
            and not any(t.lower() in tags for t in tag_spec.get("none_of", []))
        ),
        "payment_status": lambda: doc.payment_status in attrs["payment_status"],
        "approved": lambda: doc.approved == attrs["approved"],
        "gross_amount": lambda: (
            amount is not None
            and amount >= bounds.get("min", amount)
            and amount <= bounds.get("max", amount)
        ),
        "currencies": lambda: doc.currency in attrs["currencies"],
        "fields": lambda: all(doc.fields.get(k) in v for k, v in attrs["fields"].items()),
        "filename": lambda: any(
            fnmatch.fnmatchcase(doc.filename.lower(), g.lower()) for g in attrs["filename"]["glob"]
        ),
    }
    for key in attrs:
        result[f"attributes.{key}"] = checks[key]()
    return result


@given(
    scene=scenarios(max_size=10),
    specs=st.lists(restrictions(with_attributes=True, dense=True), min_size=1, max_size=4),
)
@settings(max_examples=150, deadline=None)
def test_random_documents_and_restrictions(scene: Scenario, specs: list[dict[str, Any]]) -> None:
    """Random documents and restrictions: the verdict equals a plain reference
    reading of SPEC section 2, the fast verdict equals the explained one,
    every check is listed, and every reason renders on one line."""

    docs, now, tz = scene.docs, scene.now, ZoneInfo(scene.zone)
    for spec in specs:
        _check_against_reference(spec, docs, now, tz)


def _edge_documents(spec: dict[str, Any], now: datetime, tz: ZoneInfo) -> list[Document]:
    """Documents dated on, and one day (or microsecond) beside, each bound of the
    reference window: where an off-by-one or a wrong clamp would show."""
    if "period" not in spec:
        return []
    lo, hi = _reference_window(spec["period"], now.astimezone(tz).date())
    edges = []
    for bound in (lo, hi):
        if bound is None:
            continue
        for day in (bound - timedelta(days=1), bound, bound + timedelta(days=1)):
            start = day_start_utc(day, tz)
            assert start is not None
            for delta in (-1, 0):
                edges.append(
                    make_doc(
                        external_id=f"edge-{day}-{delta}",
                        document_date=day,
                        import_date=start + timedelta(microseconds=delta),
                    )
                )
    return edges


def _check_against_reference(
    spec: dict[str, Any], docs: list[Document], now: datetime, tz: ZoneInfo
) -> None:
    evaluator = compile_restrictions(RestrictionsConfig.model_validate(spec), tz)
    expected_checks = len(spec.get("attributes") or {}) + ("origins" in spec) + ("period" in spec)
    for doc in [*docs, *_edge_documents(spec, now, tz)]:
        decision = evaluator.evaluate(doc, now)
        expected = _reference(spec, doc, now, tz)
        assert {c.name: c.passed for c in decision.checks} == (expected or {"all": True})
        assert decision.export is all(expected.values())
        assert evaluator.accepts(doc, now) is decision.export
        assert decision.export is all(c.passed for c in decision.checks)
        assert len(decision.checks) == max(expected_checks, 1)
        for check in decision.checks:
            assert check.reason and "\n" not in check.reason
