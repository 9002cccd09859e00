"""The document-attribute checks of SPEC section 2, as ordinary attribute checks.

``types``, ``tags``, ``payment_status``, ``approved``, ``gross_amount``,
``currencies`` and ``fields`` are registered through the same hook as a
third party's check: one model of a check (an ``Options`` type that validates
the user's value, ``evaluate(document)`` called once per document). Each value
type below is also the type of the matching field of the configuration's
``attributes:`` block, so the YAML is validated by this one definition.

``evaluate`` runs for every candidate of every sync, and a sync reads only
``passed``: the reason is formatted when someone reads it (``explain``,
``--dry-run``), see :class:`DeferredOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from invoicesync.plugins import AttributeCheck, CheckOutcome, Document, DocumentType, PaymentStatus
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "AmountRange",
    "ApprovedCheck",
    "ApprovedValue",
    "CurrenciesCheck",
    "CurrenciesValue",
    "DeferredOutcome",
    "FieldsCheck",
    "FieldsValue",
    "GrossAmountCheck",
    "PaymentStatusCheck",
    "PaymentStatusValue",
    "TagsCheck",
    "TagsConfig",
    "TypesCheck",
    "TypesValue",
    "error",
    "raise_at",
]


def error(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as written.

    A custom error type keeps pydantic from prefixing "Value error, ".
    """
    return PydanticCustomError("restrictions", message)


class DeferredOutcome(CheckOutcome):
    """A :class:`CheckOutcome` whose reason is formatted on first access.

    A sync evaluates thousands of documents and reads only ``passed``; the
    sentence is built only for ``explain`` and dry runs. Equal, hashable and
    printable like any CheckOutcome.
    """

    def __init__(self, passed: bool, reason: Callable[[], str]) -> None:
        # CheckOutcome is a frozen dataclass: set its fields directly.
        object.__setattr__(self, "passed", passed)
        object.__setattr__(self, "_format", reason)

    @property
    def reason(self) -> str:
        text: str | None = self.__dict__.get("_text")
        if text is None:
            text = self._format()  # type: ignore[attr-defined]
            object.__setattr__(self, "_text", text)
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CheckOutcome):
            return NotImplemented
        return (self.passed, self.reason) == (other.passed, other.reason)

    def __hash__(self) -> int:
        return hash((self.passed, self.reason))

    def __repr__(self) -> str:
        return f"CheckOutcome(passed={self.passed!r}, reason={self.reason!r})"


def _listing(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


# -- value types (shared with the configuration's ``attributes:`` fields) --------


def _not_empty(what: str) -> Any:
    def check(value: list[Any]) -> list[Any]:
        if not value:
            raise error(
                f"an empty list of {what} would reject every document; remove the key to accept any"
            )
        return value

    return AfterValidator(check)


def _str_to_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _text(value: Any) -> Any:
    # YAML turns `4711` into an int; custom field values are strings, so a
    # plain integer means its digits. Floats and booleans stay errors: their
    # text form is ambiguous (`1.50` vs `1.5`, `yes` vs `true`).
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value


def _config_amount(value: Any) -> Any:
    if isinstance(value, bool):
        raise error("expected a number such as 100 or '99.95'")
    if isinstance(value, float):
        # YAML 99.95 is a binary float; its repr is the shortest decimal that
        # round-trips, which is what the user typed, so the Decimal is exact.
        return Decimal(repr(value))
    return value


def _finite(value: Decimal | None) -> Decimal | None:
    if value is not None and not value.is_finite():
        raise error("expected a finite number")
    return value


def _currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise error(f"expected a three-letter ISO 4217 code such as EUR or USD; got {value!r}")
    return code


FieldValue = Annotated[str, BeforeValidator(_text)]
ConfigAmount = Annotated[Decimal, BeforeValidator(_config_amount), AfterValidator(_finite)]
CurrencyCode = Annotated[str, AfterValidator(_currency)]

TypesValue = Annotated[list[DocumentType], BeforeValidator(_str_to_list), _not_empty("types")]
PaymentStatusValue = Annotated[
    list[PaymentStatus], BeforeValidator(_str_to_list), _not_empty("payment statuses")
]
ApprovedValue = bool
CurrenciesValue = Annotated[
    list[CurrencyCode], BeforeValidator(_str_to_list), _not_empty("currencies")
]
FieldsValue = dict[
    str,
    Annotated[list[FieldValue], BeforeValidator(_one_or_many), _not_empty("values")],
]


class TagsConfig(BaseModel):
    """Tag conditions, all matched case-insensitively."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built when configured

    any_of: list[str] = Field(default_factory=list)
    all_of: list[str] = Field(default_factory=list)
    none_of: list[str] = Field(default_factory=list)


class AmountRange(BaseModel):
    """Inclusive bounds; a document without the amount fails."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built when configured

    min: ConfigAmount | None = None
    max: ConfigAmount | None = None

    @model_validator(mode="after")
    def _ordered(self) -> AmountRange:
        if self.min is None and self.max is None:
            raise error("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise_at(("min",), f"min {self.min} is greater than max {self.max}", self.min)
        return self


def raise_at(loc: tuple[str | int, ...], message: str, value: Any) -> None:
    """Raise an error located *below* the model being validated.

    pydantic prefixes the loc of a ValidationError raised inside a validator
    with the validator's own position, so the final path reads
    ``restrictions.attributes.gross_amount.min`` rather than just ``...gross_amount``.
    """
    raise ValidationError.from_exception_data(
        "restrictions",
        [InitErrorDetails(type=error(message), loc=loc, input=value)],
    )


# -- the checks ------------------------------------------------------------------


def _root(options: BaseModel) -> Any:
    return options.root if isinstance(options, RootModel) else options


class _OneOfCheck(AttributeCheck):
    """The document's value of one attribute is one of the listed values."""

    label: ClassVar[str]

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        values = [str(v) for v in _root(options)]
        self.values = frozenset(values)
        self.shown = _listing(values)

    def value(self, document: Document) -> str | None:
        raise NotImplementedError

    def evaluate(self, document: Document) -> CheckOutcome:
        value = self.value(document)
        passed = value is not None and value in self.values
        return DeferredOutcome(passed, lambda: self._reason(value, passed))

    def _reason(self, value: str | None, passed: bool) -> str:
        return f"{self.label} {value} is {'' if passed else 'not '}one of {self.shown}"


class TypesCheck(_OneOfCheck):
    """The document's type is one of the listed types."""

    key: ClassVar[str] = "types"
    Options: ClassVar[type[BaseModel]] = RootModel[TypesValue]
    description: ClassVar[str] = "document type is one of the listed types"
    label: ClassVar[str] = "type"

    def value(self, document: Document) -> str | None:
        return document.type


class TagsCheck(AttributeCheck):
    """``any_of`` / ``all_of`` / ``none_of`` tag conditions, case-insensitive."""

    key: ClassVar[str] = "tags"
    Options: ClassVar[type[BaseModel]] = TagsConfig
    description: ClassVar[str] = "tags: any_of, all_of, none_of (case-insensitive)"

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        assert isinstance(options, TagsConfig)
        self.config = options
        self.any_of = frozenset(t.casefold() for t in options.any_of)
        self.all_of = frozenset(t.casefold() for t in options.all_of)
        self.none_of = frozenset(t.casefold() for t in options.none_of)

    def evaluate(self, document: Document) -> CheckOutcome:
        tags = {t.casefold() for t in document.tags}
        passed = (
            (not self.any_of or not self.any_of.isdisjoint(tags))
            and self.all_of <= tags
            and self.none_of.isdisjoint(tags)
        )
        return DeferredOutcome(passed, lambda: self._reason(document, tags))

    def _reason(self, document: Document, tags: set[str]) -> str:
        shown = (
            "{" + ", ".join(sorted(document.tags, key=str.casefold)) + "}" if tags else "no tags"
        )
        parts: list[str] = []
        if self.any_of:
            hit = sorted(self.any_of & tags)
            parts.append(
                f"has {_listing(hit)} (any_of)"
                if hit
                else f"has none of any_of: {_listing(self.config.any_of)}"
            )
        if self.all_of:
            missing = [t for t in self.config.all_of if t.casefold() not in tags]
            parts.append(
                f"lacks {_listing(missing)} (all_of)" if missing else "has every tag of all_of"
            )
        if self.none_of:
            bad = [t for t in self.config.none_of if t.casefold() in tags]
            parts.append(
                f"has {_listing(bad)} (none_of)" if bad else "has none of the none_of tags"
            )
        return f"tags {shown}: " + ("; ".join(parts) if parts else "no tag conditions")


class PaymentStatusCheck(_OneOfCheck):
    """The payment status is one of the listed statuses."""

    key: ClassVar[str] = "payment_status"
    Options: ClassVar[type[BaseModel]] = RootModel[PaymentStatusValue]
    description: ClassVar[str] = "payment status is one of the listed statuses"
    label: ClassVar[str] = "payment status"

    def value(self, document: Document) -> str | None:
        return document.payment_status


class ApprovedCheck(AttributeCheck):
    """The document is approved (``true``) or not approved (``false``)."""

    key: ClassVar[str] = "approved"
    Options: ClassVar[type[BaseModel]] = RootModel[ApprovedValue]
    description: ClassVar[str] = "document is (or is not) approved"

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        self.wanted = bool(_root(options))

    def evaluate(self, document: Document) -> CheckOutcome:
        passed = document.approved is self.wanted
        return DeferredOutcome(passed, lambda: self._reason(document, passed))

    def _reason(self, document: Document, passed: bool) -> str:
        state = "approved" if document.approved else "not approved"
        need = "approved" if self.wanted else "not approved"
        return f"document is {state}" + ("" if passed else f"; the account wants {need}")


class GrossAmountCheck(AttributeCheck):
    """The gross amount lies within inclusive bounds (exact decimals)."""

    key: ClassVar[str] = "gross_amount"
    Options: ClassVar[type[BaseModel]] = AmountRange
    description: ClassVar[str] = "gross amount within min/max (inclusive)"

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        assert isinstance(options, AmountRange)
        self.min: Decimal | None = options.min
        self.max: Decimal | None = options.max

    def evaluate(self, document: Document) -> CheckOutcome:
        amount = document.gross_amount
        passed = amount is not None and (
            (self.min is None or amount >= self.min) and (self.max is None or amount <= self.max)
        )
        return DeferredOutcome(passed, lambda: self._reason(document))

    def _reason(self, document: Document) -> str:
        amount = document.gross_amount
        if amount is None:
            return "no gross amount"
        shown = f"gross amount {amount}" + (f" {document.currency}" if document.currency else "")
        if self.min is not None and amount < self.min:
            return f"{shown} is below the minimum {self.min}"
        if self.max is not None and amount > self.max:
            return f"{shown} is above the maximum {self.max}"
        lo = "" if self.min is None else f"min {self.min}"
        hi = "" if self.max is None else f"max {self.max}"
        return f"{shown} is within {', '.join(p for p in (lo, hi) if p)}"


class CurrenciesCheck(_OneOfCheck):
    """The currency is one of the listed ISO 4217 codes."""

    key: ClassVar[str] = "currencies"
    Options: ClassVar[type[BaseModel]] = RootModel[CurrenciesValue]
    description: ClassVar[str] = "currency is one of the listed ISO 4217 codes"
    label: ClassVar[str] = "currency"

    def value(self, document: Document) -> str | None:
        return document.currency

    def _reason(self, value: str | None, passed: bool) -> str:
        if value is None:
            return f"no currency (wanted one of {self.shown})"
        return super()._reason(value, passed)


class FieldsCheck(AttributeCheck):
    """Each named custom field has one of the listed values."""

    key: ClassVar[str] = "fields"
    Options: ClassVar[type[BaseModel]] = RootModel[FieldsValue]
    description: ClassVar[str] = "custom fields have one of the listed values"

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        fields: Mapping[str, Sequence[str]] = _root(options)
        self.items = [(key, frozenset(values), _listing(values)) for key, values in fields.items()]

    def evaluate(self, document: Document) -> CheckOutcome:
        fields = document.fields
        passed = all(fields.get(key) in values for key, values, _ in self.items)
        return DeferredOutcome(passed, lambda: self._reason(document))

    def _reason(self, document: Document) -> str:
        parts = []
        for key, values, shown in self.items:
            value = document.fields.get(key)
            if value is None:
                parts.append(f"field {key} is missing (wanted one of {shown})")
            elif value in values:
                parts.append(f"field {key} is {value!r}")
            else:
                parts.append(f"field {key} is {value!r}, not one of {shown}")
        return "; ".join(parts)
