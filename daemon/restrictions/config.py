"""The ``restrictions:`` block of an export account, as validated configuration.

Validation that needs to know the rest of the configuration reads it from the
pydantic validation context (each key optional; a missing key skips that
cross-check, so the models also validate standalone):

``known_sources`` / ``known_companies``
    sets of ids; origins naming another id are an error.
``checks``
    ``{key: AttributeCheck subclass}`` from the plugin registry; keys under
    ``attributes:`` that are neither built in nor registered are an error,
    and a registered check's value is validated by its ``Options`` model.

Every error carries a ``loc`` pointing at the bad value (``period.last``,
``origins.sources.1``, ``attributes.filename.glob``) and a message that says
what was expected, so the configuration loader can report file, line and path.
"""

from __future__ import annotations

import difflib
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from invoicesync.connectors_builtin.checks.attributes import (
    AmountRange,
    ApprovedValue,
    CurrenciesValue,
    FieldsValue,
    PaymentStatusValue,
    TagsConfig,
    TypesValue,
)
from invoicesync.connectors_builtin.checks.attributes import error as _error
from invoicesync.connectors_builtin.checks.attributes import raise_at as _raise_at
from invoicesync.plugins.checks import AttributeCheck
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from .periods import Preset, parse_span

__all__ = [
    "BUILTIN_ATTRIBUTES",
    "AmountRange",
    "AttributesConfig",
    "MissingDate",
    "OriginsConfig",
    "OriginsMode",
    "PeriodConfig",
    "RelativeTo",
    "RestrictionsConfig",
    "TagsConfig",
    "validate_check_options",
]


def _context(info: ValidationInfo) -> dict[str, Any]:
    ctx = info.context
    return ctx if isinstance(ctx, dict) else {}


def _known_id(kind: str, context_key: str) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        known = _context(info).get(context_key)
        if known is not None and value not in known:
            listing = ", ".join(sorted(known)) or "none are configured"
            raise _error(f"unknown {kind} id {value!r}; known {kind} ids: {listing}")
        return value

    return AfterValidator(check)


SourceId = Annotated[str, _known_id("source", "known_sources")]
CompanyId = Annotated[str, _known_id("company", "known_companies")]


# -- origins ------------------------------------------------------------------


class OriginsMode(StrEnum):
    INCLUDE = "include"
    EXCLUDE = "exclude"


class OriginsConfig(BaseModel):
    """The "Companies & Portals" checklist: a document matches it when its
    source is in ``sources`` or its company is in ``companies``."""

    model_config = ConfigDict(extra="forbid")

    mode: OriginsMode = OriginsMode.INCLUDE
    sources: list[SourceId] = Field(default_factory=list)
    companies: list[CompanyId] = Field(default_factory=list)

    @model_validator(mode="after")
    def _include_not_empty(self) -> OriginsConfig:
        if self.mode is OriginsMode.INCLUDE and not self.sources and not self.companies:
            raise _error(
                "an include list needs at least one source or company id "
                "(an empty one would export nothing; remove `origins` to export everything)"
            )
        return self


# -- period -------------------------------------------------------------------


class RelativeTo(StrEnum):
    DOCUMENT_DATE = "document_date"
    IMPORT_DATE = "import_date"


class MissingDate(StrEnum):
    EXCLUDE = "exclude"
    INCLUDE = "include"


WINDOW_FORMS = ("since", "until", "between", "last", "preset")


class PeriodConfig(BaseModel):
    """Which days a document's date (or import date) may fall on. Exactly one
    of ``since``, ``until``, ``between``, ``last``, ``preset``."""

    model_config = ConfigDict(extra="forbid")

    relative_to: RelativeTo = RelativeTo.DOCUMENT_DATE
    since: date | None = None
    until: date | None = None
    between: tuple[date, date] | None = None
    last: Annotated[
        str | None,
        Field(
            description="N followed by d, w, m or y: days, weeks, months, years",
            json_schema_extra={"pattern": r"^\d+[dwmy]$"},
        ),
    ] = None
    preset: Preset | None = None
    on_missing_date: MissingDate = MissingDate.EXCLUDE

    @field_validator("last", mode="before")
    @classmethod
    def _span(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            return str(parse_span(value))
        except ValueError as exc:
            raise _error(str(exc)) from None

    @field_validator("between")
    @classmethod
    def _ordered(cls, value: tuple[date, date] | None) -> tuple[date, date] | None:
        if value is not None and value[0] > value[1]:
            raise _error(
                f"the start {value[0]} is after the end {value[1]}; write [earlier, later]"
            )
        return value

    @model_validator(mode="after")
    def _one_window(self) -> PeriodConfig:
        given = [name for name in WINDOW_FORMS if getattr(self, name) is not None]
        if not given:
            raise _error(f"give one of {', '.join(WINDOW_FORMS)}")
        if len(given) > 1:
            _raise_at(
                (given[1],),
                f"give only one of {', '.join(WINDOW_FORMS)}; `{given[0]}` is already set "
                f"(use `between: [A, B]` for a range)",
                getattr(self, given[1]),
            )
        return self

    @property
    def form(self) -> str:
        """Which window form is set (validation guarantees exactly one)."""
        return next(name for name in WINDOW_FORMS if getattr(self, name) is not None)


# -- attributes ---------------------------------------------------------------
#
# The built-in attribute checks own their value types (they are registered
# through the plugin hook like a third party's, connectors_builtin/checks);
# the fields below use those very types, so the configuration format and its
# JSON Schema stay static and each value is validated by one definition.


BUILTIN_ATTRIBUTES = (
    "types",
    "tags",
    "payment_status",
    "approved",
    "gross_amount",
    "currencies",
    "fields",
)


def validate_check_options(
    key: str, value: Any, check: type[AttributeCheck], context: dict[str, Any] | None = None
) -> BaseModel:
    """Validate a plugin check's value with its ``Options`` model (errors located under ``key``)."""
    if isinstance(value, check.Options):
        return value
    try:
        return check.Options.model_validate(value, context=context)
    except ValidationError as exc:
        raise ValidationError.from_exception_data(
            "restrictions",
            [
                InitErrorDetails(
                    type=_error(err["msg"]), loc=(key, *err["loc"]), input=err.get("input")
                )
                for err in exc.errors()
            ],
        ) from None


class AttributesConfig(BaseModel):
    """Document attributes that must hold. Inside a list, any value matches.

    Keys other than the built-in ones name attribute checks registered by
    plugins; after validation with a ``checks`` context their values are the
    checks' validated ``Options`` instances (in ``model_extra``).
    """

    model_config = ConfigDict(extra="allow")

    types: TypesValue | None = None
    tags: TagsConfig | None = None
    payment_status: PaymentStatusValue | None = None
    approved: ApprovedValue | None = None
    gross_amount: AmountRange | None = None
    currencies: CurrenciesValue | None = None
    fields: FieldsValue | None = None

    @model_validator(mode="after")
    def _plugin_checks(self, info: ValidationInfo) -> AttributesConfig:
        extra = self.__pydantic_extra__
        if not extra:
            return self
        context = _context(info)
        checks: dict[str, type[AttributeCheck]] | None = context.get("checks")
        if checks is None:
            return self  # validated when compiled (compile_restrictions)
        for key, value in list(extra.items()):
            check = checks.get(key)
            if check is None:
                known = sorted({*BUILTIN_ATTRIBUTES, *checks})
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                _raise_at(
                    (key,),
                    f"unknown attribute check {key!r}{hint}; known: {', '.join(known)}",
                    value,
                )
                continue  # pragma: no cover - _raise_at raised
            extra[key] = validate_check_options(key, value, check, context)
        return self

    def plugin_options(self) -> dict[str, Any]:
        """The plugin-check keys in the order written, with their (validated) values."""
        return dict(self.__pydantic_extra__ or {})


class RestrictionsConfig(BaseModel):
    """Every restriction given must hold for a document to be exported."""

    model_config = ConfigDict(extra="forbid")

    origins: OriginsConfig | None = None
    period: PeriodConfig | None = None
    attributes: AttributesConfig | None = None
