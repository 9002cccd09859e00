"""Configuration errors: each names the path of the bad value and says what is expected."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from invoicesync.connectors_builtin.checks import BUILTIN_CHECKS
from invoicesync.daemon.restrictions import RestrictionsConfig, compile_restrictions
from invoicesync.plugins.errors import ConfigurationError
from pydantic import ValidationError

from .factories import BERLIN

CONTEXT: dict[str, Any] = {
    "known_sources": {"portal", "inbox"},
    "known_companies": {"acme"},
    "checks": {c.key: c for c in BUILTIN_CHECKS},
    "timezone": "Europe/Berlin",
}


def err(name: str, restrictions: dict[str, Any], loc: tuple[Any, ...], message: str) -> Any:
    return pytest.param(restrictions, loc, message, id=name)


ERRORS = [
    err(
        "unknown source",
        {"origins": {"sources": ["portal", "portl"]}},
        ("origins", "sources", 1),
        "unknown source id 'portl'; known source ids: inbox, portal",
    ),
    err(
        "unknown company",
        {"origins": {"mode": "exclude", "companies": ["acne"]}},
        ("origins", "companies", 0),
        "unknown company id 'acne'; known company ids: acme",
    ),
    err(
        "empty include list",
        {"origins": {"mode": "include"}},
        ("origins",),
        "an include list needs at least one source or company id",
    ),
    err(
        "bad origins mode",
        {"origins": {"mode": "only", "sources": ["portal"]}},
        ("origins", "mode"),
        "'include' or 'exclude'",
    ),
    err("origins typo", {"origins": {"source": ["portal"]}}, ("origins", "source"), "Extra inputs"),
    err(
        "two window forms",
        {"period": {"last": "3m", "preset": "current_month"}},
        ("period", "preset"),
        "give only one of since, until, between, last, preset; `last` is already set",
    ),
    err(
        "since and until",
        {"period": {"since": "2024-01-01", "until": "2024-02-01"}},
        ("period", "until"),
        "use `between: [A, B]` for a range",
    ),
    err(
        "no window form",
        {"period": {"relative_to": "import_date"}},
        ("period",),
        "give one of since, until, between, last, preset",
    ),
    err(
        "bad unit",
        {"period": {"last": "3x"}},
        ("period", "last"),
        "expected N followed by d, w, m or y",
    ),
    err(
        "unit missing",
        {"period": {"last": 30}},
        ("period", "last"),
        "expected N followed by d, w, m or y (days, weeks, months, years), e.g. 3m; got 30",
    ),
    err(
        "between reversed",
        {"period": {"between": ["2024-05-01", "2024-04-01"]}},
        ("period", "between"),
        "the start 2024-05-01 is after the end 2024-04-01",
    ),
    err(
        "between one date",
        {"period": {"between": ["2024-05-01"]}},
        ("period", "between", 1),
        "Field required",
    ),
    err("bad date", {"period": {"since": "2024-02-30"}}, ("period", "since"), "date"),
    err(
        "unknown preset",
        {"period": {"preset": "last_month"}},
        ("period", "preset"),
        "'current_month', 'previous_month', 'current_quarter', 'previous_quarter', "
        "'current_year' or 'previous_year'",
    ),
    err(
        "bad relative_to",
        {"period": {"relative_to": "due_date", "last": "1m"}},
        ("period", "relative_to"),
        "'document_date' or 'import_date'",
    ),
    err(
        "bad on_missing_date",
        {"period": {"last": "1m", "on_missing_date": "yes"}},
        ("period", "on_missing_date"),
        "'exclude' or 'include'",
    ),
    err(
        "unknown type",
        {"attributes": {"types": ["invoice"]}},
        ("attributes", "types", 0),
        "'incoming_invoice', 'sales_invoice', 'credit_note'",
    ),
    err(
        "empty types",
        {"attributes": {"types": []}},
        ("attributes", "types"),
        "an empty list of types would reject every document",
    ),
    err(
        "unknown status",
        {"attributes": {"payment_status": ["payed"]}},
        ("attributes", "payment_status", 0),
        "'paid', 'partially_paid', 'unpaid' or 'unknown'",
    ),
    err(
        "min > max",
        {"attributes": {"gross_amount": {"min": 100, "max": "99.99"}}},
        ("attributes", "gross_amount", "min"),
        "min 100 is greater than max 99.99",
    ),
    err(
        "amount not a number",
        {"attributes": {"gross_amount": {"min": "ten"}}},
        ("attributes", "gross_amount", "min"),
        "decimal",
    ),
    err(
        "amount infinite",
        {"attributes": {"gross_amount": {"max": "Infinity"}}},
        ("attributes", "gross_amount", "max"),
        "finite number",
    ),
    err(
        "amount range empty",
        {"attributes": {"gross_amount": {}}},
        ("attributes", "gross_amount"),
        "give min, max or both",
    ),
    err(
        "bad currency",
        {"attributes": {"currencies": ["EURO"]}},
        ("attributes", "currencies", 0),
        "three-letter ISO 4217 code",
    ),
    err(
        "tags typo",
        {"attributes": {"tags": {"anyof": ["x"]}}},
        ("attributes", "tags", "anyof"),
        "Extra inputs",
    ),
    err(
        "approved not bool",
        {"attributes": {"approved": "maybe"}},
        ("attributes", "approved"),
        "boolean",
    ),
    err(
        "fields float value",
        {"attributes": {"fields": {"cc": [1.5]}}},
        ("attributes", "fields", "cc", 0),
        "string",
    ),
    err(
        "fields empty",
        {"attributes": {"fields": {"cc": []}}},
        ("attributes", "fields", "cc"),
        "an empty list of values",
    ),
    err(
        "unknown attribute key",
        {"attributes": {"colour": ["red"]}},
        ("attributes", "colour"),
        "unknown attribute check 'colour'; known: approved, currencies, einvoice_valid, fields, "
        "filename, gross_amount, payment_status, tags, types",
    ),
    err(
        "plugin options validated inside",
        {"attributes": {"filename": {"glob": "*.pdf", "x": 1}}},
        ("attributes", "filename", "x"),
        "Extra inputs",
    ),
    err(
        "plugin options missing key",
        {"attributes": {"filename": {}}},
        ("attributes", "filename", "glob"),
        "Field required",
    ),
    err("unknown top-level key", {"period_": {}}, ("period_",), "Extra inputs"),
]


@pytest.mark.parametrize(("restrictions", "loc", "message"), ERRORS)
def test_error_names_the_path(
    restrictions: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        RestrictionsConfig.model_validate(restrictions, context=CONTEXT)
    errors = info.value.errors()
    assert loc in [e["loc"] for e in errors], errors
    found = next(e for e in errors if e["loc"] == loc)
    assert message in found["msg"], found["msg"]
    assert not found["msg"].startswith("Value error"), found["msg"]


def test_nested_under_the_whole_configuration() -> None:
    """The loader validates restrictions inside exports[i]; the path composes."""
    from pydantic import BaseModel

    class Export(BaseModel):
        restrictions: RestrictionsConfig | None = None

    class Config(BaseModel):
        exports: list[Export]

    with pytest.raises(ValidationError) as info:
        Config.model_validate(
            {"exports": [{}, {"restrictions": {"period": {"last": "3m", "since": "2024-01-01"}}}]},
            context=CONTEXT,
        )
    assert [e["loc"] for e in info.value.errors()] == [
        ("exports", 1, "restrictions", "period", "last")
    ]


VALID = [
    {},
    {"origins": {"mode": "exclude"}},
    {"origins": {"sources": ["inbox"], "companies": ["acme"]}},
    {"period": {"last": " 12 w "}},
    {
        "period": {
            "relative_to": "import_date",
            "preset": "previous_quarter",
            "on_missing_date": "include",
        }
    },
    {"period": {"between": ["2024-01-01", "2024-01-01"]}},
    {"attributes": {"types": "credit_note", "payment_status": "paid", "currencies": "eur"}},
    {"attributes": {"tags": {}, "approved": False, "gross_amount": {"max": 0}}},
    {"attributes": {"fields": {"cc": 4711}, "filename": {"glob": ["*.pdf"]}}},
]


@pytest.mark.parametrize("restrictions", VALID)
def test_valid_configurations(restrictions: dict[str, Any]) -> None:
    config = RestrictionsConfig.model_validate(restrictions, context=CONTEXT)
    compile_restrictions(config, BERLIN)


def test_normalised_values() -> None:
    config = RestrictionsConfig.model_validate(
        {
            "period": {"last": " 12 w "},
            "attributes": {
                "currencies": "eur",
                "fields": {"cc": 4711},
                "gross_amount": {"min": 0.1, "max": "10"},
            },
        }
    )
    assert config.period is not None and config.period.last == "12w"
    assert config.attributes is not None
    assert config.attributes.currencies == ["EUR"]
    assert config.attributes.fields == {"cc": ["4711"]}
    assert config.attributes.gross_amount is not None
    assert config.attributes.gross_amount.min == Decimal("0.1")  # not 0.1000000000000000055...


def test_standalone_validation_skips_cross_checks() -> None:
    """Without a context, ids and plugin keys cannot be checked: compile does the latter."""
    config = RestrictionsConfig.model_validate(
        {"origins": {"sources": ["anything"]}, "attributes": {"colour": "red"}}
    )
    with pytest.raises(
        ConfigurationError, match=r"restrictions\.attributes\.colour: unknown attribute check"
    ):
        compile_restrictions(config, BERLIN)
    bad = RestrictionsConfig.model_validate({"attributes": {"filename": {"glob": []}}})
    with pytest.raises(ConfigurationError, match=r"restrictions\.attributes\.filename\.glob: "):
        compile_restrictions(bad, BERLIN)


def test_json_schema_is_generated() -> None:
    schema = RestrictionsConfig.model_json_schema()
    assert "period" in schema["properties"]
