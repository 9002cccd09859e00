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
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from invoicesync.plugins.checks import AttributeCheck
from invoicesync.plugins.models import DocumentType, PaymentStatus
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

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


def _error(message: str) -> PydanticCustomError:
    # A custom error type keeps pydantic from prefixing "Value error, ".
    return PydanticCustomError("restrictions", message)


def _raise_at(loc: tuple[str | int, ...], message: str, value: Any) -> None:
    """Raise an error located *below* the model being validated.

    pydantic prefixes the loc of a ValidationError raised inside a validator
    with the validator's own position, so the final path reads
    ``restrictions.period.preset`` rather than just ``restrictions.period``.
    """
    raise ValidationError.from_exception_data(
        "restrictions",
        [InitErrorDetails(type=_error(message), loc=loc, input=value)],
    )


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


def _not_empty(what: str) -> Any:
    def check(value: list[Any]) -> list[Any]:
        if not value:
            raise _error(
                f"an empty list of {what} would reject every document; remove the key to accept any"
            )
        return value

    return AfterValidator(check)


def _text(value: Any) -> Any:
    # YAML turns `4711` into an int; custom field values are strings, so a
    # plain integer means its digits. Floats and booleans stay errors: their
    # text form is ambiguous (`1.50` vs `1.5`, `yes` vs `true`).
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


FieldValue = Annotated[str, BeforeValidator(_text)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value


def _config_amount(value: Any) -> Any:
    if isinstance(value, bool):
        raise _error("expected a number such as 100 or '99.95'")
    if isinstance(value, float):
        # YAML 99.95 is a binary float; its repr is the shortest decimal that
        # round-trips, which is what the user typed.
        return Decimal(repr(value))
    return value


def _finite(value: Decimal | None) -> Decimal | None:
    if value is not None and not value.is_finite():
        raise _error("expected a finite number")
    return value


ConfigAmount = Annotated[Decimal, BeforeValidator(_config_amount), AfterValidator(_finite)]


def _currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise _error(f"expected a three-letter ISO 4217 code such as EUR or USD; got {value!r}")
    return code


CurrencyCode = Annotated[str, AfterValidator(_currency)]


class TagsConfig(BaseModel):
    """Tag conditions, all matched case-insensitively."""

    model_config = ConfigDict(extra="forbid")

    any_of: list[str] = Field(default_factory=list)
    all_of: list[str] = Field(default_factory=list)
    none_of: list[str] = Field(default_factory=list)


class AmountRange(BaseModel):
    """Inclusive bounds; a document without the amount fails."""

    model_config = ConfigDict(extra="forbid")

    min: ConfigAmount | None = None
    max: ConfigAmount | None = None

    @model_validator(mode="after")
    def _ordered(self) -> AmountRange:
        if self.min is None and self.max is None:
            raise _error("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            _raise_at(("min",), f"min {self.min} is greater than max {self.max}", self.min)
        return self


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

    types: Annotated[list[DocumentType], _not_empty("types")] | None = None
    tags: TagsConfig | None = None
    payment_status: Annotated[list[PaymentStatus], _not_empty("payment statuses")] | None = None
    approved: bool | None = None
    gross_amount: AmountRange | None = None
    currencies: Annotated[list[CurrencyCode], _not_empty("currencies")] | None = None
    fields: (
        dict[
            str,
            Annotated[
                list[FieldValue],
                BeforeValidator(_one_or_many),
                _not_empty("values"),
            ],
        ]
        | None
    ) = None

    @field_validator("payment_status", mode="before")
    @classmethod
    def _status_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("types", "currencies", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

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
