"""Deciding, per document, whether an export account takes it (SPEC section 2).

:func:`compile_restrictions` turns a validated ``restrictions:`` block into an
:class:`Evaluator` once per account. The evaluator is pure (no I/O, no clock:
the caller passes ``now``) and cheap per document: sets and bounds are built
at compile time, and everything that depends only on ``now`` (today, the day
window, its UTC bounds) is computed once per distinct ``now``.

Two ways to ask:

* :meth:`Evaluator.evaluate` returns a :class:`Decision` with every check and
  a human reason for each (``explain``, ``sync --dry-run``, and export runs,
  which log the deciding reason and count exclusions per check). Reasons are
  formatted lazily, on first access, so a sync that only reads ``export``
  does not pay for the sentences.
* :meth:`Evaluator.accepts` returns just the verdict, stopping at the first
  failed check: ``status`` (pending counts) and ``documents`` use it. It
  always equals ``evaluate(...).export``.

:meth:`Evaluator.sql_filter` gives the origins and period checks as a WHERE
clause so the catalog selects candidates in bulk (see :mod:`.sql`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from invoicesync.plugins.checks import AttributeCheck, CheckOutcome
from invoicesync.plugins.errors import ConfigurationError
from invoicesync.plugins.models import Document
from pydantic import BaseModel, RootModel, ValidationError

from . import sql
from .config import (
    BUILTIN_ATTRIBUTES,
    AttributesConfig,
    MissingDate,
    OriginsConfig,
    OriginsMode,
    PeriodConfig,
    RelativeTo,
    RestrictionsConfig,
    validate_check_options,
)
from .periods import DayWindow, local_day, local_today, parse_span, preset_window, span_start

__all__ = ["Check", "Decision", "Evaluator", "compile_restrictions"]


class Check:
    """One restriction check's outcome for one document.

    ``reason`` is a sentence for people (``explain``, ``--dry-run``). It may
    be given as a zero-argument callable; it is then formatted on first
    access and remembered.
    """

    __slots__ = ("_reason", "name", "passed")

    def __init__(self, name: str, passed: bool, reason: str | Callable[[], str]) -> None:
        self.name = name
        self.passed = passed
        self._reason = reason

    @property
    def reason(self) -> str:
        reason = self._reason
        if not isinstance(reason, str):
            reason = reason()
            self._reason = reason
        return reason

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Check):
            return NotImplemented
        return (self.name, self.passed, self.reason) == (other.name, other.passed, other.reason)

    def __hash__(self) -> int:
        return hash((self.name, self.passed, self.reason))

    def __repr__(self) -> str:
        return f"Check(name={self.name!r}, passed={self.passed!r}, reason={self.reason!r})"

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.reason}"


@dataclass(frozen=True)
class Decision:
    """The verdict: exported iff every check passed."""

    export: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def deciding(self) -> Check | None:
        """The first failed check, or None when the document goes."""
        return next((c for c in self.checks if not c.passed), None)

    @property
    def summary(self) -> str:
        """One line for ``sync --dry-run``: why the document goes or stays.

        A rejection names the deciding check and its reason; an export names
        the checks that passed (or says there are no restrictions).
        """
        failed = self.deciding
        if failed is not None:
            return f"{failed.name}: {failed.reason}"
        names = [c.name for c in self.checks if c.name != "all"]
        if not names:
            return "no restrictions: the account syncs every document"
        return "passes " + ", ".join(names)


# -- per-`now` state -------------------------------------------------------------


@dataclass(frozen=True)
class _Clock:
    """Everything that depends on the evaluation time only."""

    now: datetime
    today: date
    window: DayWindow | None
    label: str  # how the window was written, for reasons


# -- rules -------------------------------------------------------------------------


class _Rule:
    """A compiled check. ``passes`` is the hot path; ``reason`` runs only on demand."""

    name: str

    def passes(self, doc: Document, clock: _Clock) -> bool:
        raise NotImplementedError

    def reason(self, doc: Document, clock: _Clock, passed: bool) -> str:
        raise NotImplementedError


def _listing(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


class _Origins(_Rule):
    name = "origins"

    def __init__(self, config: OriginsConfig) -> None:
        self.include = config.mode is OriginsMode.INCLUDE
        self.sources = frozenset(config.sources)
        self.companies = frozenset(config.companies)

    def matches(self, doc: Document) -> bool:
        return doc.source in self.sources or (
            doc.company is not None and doc.company in self.companies
        )

    def passes(self, doc: Document, clock: _Clock) -> bool:
        return self.matches(doc) is self.include

    def reason(self, doc: Document, clock: _Clock, passed: bool) -> str:
        which = "include" if self.include else "exclude"
        if doc.source in self.sources:
            return f"source {doc.source!r} is in the {which} list"
        if doc.company is not None and doc.company in self.companies:
            return f"company {doc.company!r} is in the {which} list"
        company = "no company" if doc.company is None else f"company {doc.company!r}"
        return f"neither source {doc.source!r} nor {company} is in the {which} list"


class _Period(_Rule):
    name = "period"

    def __init__(self, config: PeriodConfig, tz: ZoneInfo) -> None:
        self.config = config
        self.tz = tz
        self.by_import = config.relative_to is RelativeTo.IMPORT_DATE
        self.missing_ok = config.on_missing_date is MissingDate.INCLUDE
        self.span = parse_span(config.last) if config.last is not None else None

    def window(self, today: date) -> tuple[DayWindow, str]:
        c = self.config
        zone = f"today {today} {self.tz}"
        if c.since is not None:
            return DayWindow(c.since, None), f"since: {c.since}"
        if c.until is not None:
            return DayWindow(None, c.until), f"until: {c.until}"
        if c.between is not None:
            return DayWindow(*c.between), f"between: {c.between[0]} and {c.between[1]}"
        if self.span is not None:
            return DayWindow(span_start(today, self.span), today), f"last: {self.span}, {zone}"
        assert c.preset is not None  # validation guarantees exactly one form
        return DayWindow(*preset_window(c.preset, today)), f"preset: {c.preset}, {zone}"

    def day(self, doc: Document) -> date | None:
        if self.by_import:
            return local_day(doc.import_date, self.tz)
        return doc.document_date

    def passes(self, doc: Document, clock: _Clock) -> bool:
        day = self.day(doc)
        if day is None:
            return self.missing_ok
        window = clock.window
        assert window is not None
        return window.contains(day)

    def reason(self, doc: Document, clock: _Clock, passed: bool) -> str:
        day = self.day(doc)
        if day is None:
            verdict = "lets it through" if passed else "leaves it out"
            return f"no document date; on_missing_date: {self.config.on_missing_date} {verdict}"
        if self.by_import:
            stamp = doc.import_date.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
            subject = f"import date {day} (imported {stamp} UTC)"
        else:
            subject = f"document date {day}"
        window = clock.window
        assert window is not None
        if window.first is not None and day < window.first:
            where = f"is before {window.first}"
        elif window.last is not None and day > window.last:
            where = f"is after {window.last}"
        else:
            where = f"is within {window.describe()}"
        return f"{subject} {where} ({clock.label})"


class _Attribute(_Rule):
    """An attribute check (built-in or a plugin's: one model), guarded.

    ``evaluate`` is called once per document; its outcome carries the
    passed flag and the reason (which a built-in formats only when read).
    """

    def __init__(self, key: str, check: AttributeCheck) -> None:
        self.name = f"attributes.{key}"
        self.check = check

    def outcome(self, doc: Document) -> CheckOutcome:
        # A plugin's bug must not stop a sync or let a document through: the
        # check fails for that document and the reason says why.
        try:
            outcome = self.check.evaluate(doc)
        except Exception as exc:
            return CheckOutcome(False, f"the {self.name} check raised {type(exc).__name__}: {exc}")
        if not isinstance(outcome, CheckOutcome):
            return CheckOutcome(
                False, f"the {self.name} check returned {type(outcome).__name__}, not CheckOutcome"
            )
        return outcome

    def passes(self, doc: Document, clock: _Clock) -> bool:
        return self.outcome(doc).passed

    def reason(self, doc: Document, clock: _Clock, passed: bool) -> str:
        return self.outcome(doc).reason


# -- the evaluator ----------------------------------------------------------------


class Evaluator:
    """A compiled ``restrictions:`` block for one export account."""

    def __init__(
        self,
        config: RestrictionsConfig | None,
        tz: ZoneInfo,
        checks: Mapping[str, type[AttributeCheck]] | None = None,
        skip_duplicates: bool = False,
    ) -> None:
        self.config = config or RestrictionsConfig()
        self.tz = tz
        # ``duplicates: skip`` (the account's default): a document marked
        # duplicate_of another is not exported; checked before every rule.
        self.skip_duplicates = skip_duplicates
        self._origins = _Origins(self.config.origins) if self.config.origins else None
        self._period = _Period(self.config.period, tz) if self.config.period else None
        rules: list[_Rule] = []
        if self._origins is not None:
            rules.append(self._origins)
        if self._period is not None:
            rules.append(self._period)
        if self.config.attributes is not None:
            rules.extend(_attribute_rules(self.config.attributes, checks))
        self._rules: tuple[_Rule, ...] = tuple(rules)
        self._clock: _Clock | None = None

    def _clock_for(self, now: datetime) -> _Clock:
        # One sync evaluates thousands of documents at the same `now` (or at
        # ever later instants of the same local day, when the caller reads
        # the clock per document): the day window is computed once per local
        # day, not per document. The cache is one attribute holding an
        # immutable _Clock, replaced atomically, so threads may share it.
        clock = self._clock
        if clock is not None and clock.now == now:
            return clock
        today = local_today(now, self.tz)  # a naive `now` is read as UTC
        if clock is not None and clock.today == today:
            clock = _Clock(now, today, clock.window, clock.label)
        else:
            window, label = (None, "")
            if self._period is not None:
                window, label = self._period.window(today)
            clock = _Clock(now, today, window, label)
        self._clock = clock
        return clock

    def window(self, now: datetime) -> DayWindow | None:
        """The period's inclusive local-day window at ``now`` (None without a period)."""
        return self._clock_for(now).window

    def accepts(self, document: Document, now: datetime) -> bool:
        """The verdict alone, stopping at the first failed check."""
        if self.skip_duplicates and document.duplicate_of is not None:
            return False
        clock = self._clock_for(now)
        # A plain loop, not all(<generator>): this is the hot path and the
        # generator costs a frame per document.
        for rule in self._rules:  # noqa: SIM110
            if not rule.passes(document, clock):
                return False
        return True

    def evaluate(self, document: Document, now: datetime) -> Decision:
        """Every check with its outcome and reason; exported iff all passed."""
        clock = self._clock_for(now)
        duplicate: list[Check] = []
        if self.skip_duplicates and document.duplicate_of is not None:
            why = document.provenance.get("duplicate_of", "the same invoice")
            duplicate = [
                Check(
                    "duplicates",
                    False,
                    f"duplicate of {document.duplicate_of} ({why}); the account skips "
                    "duplicates (duplicates: skip)",
                )
            ]
        if not self._rules:
            if duplicate:
                return Decision(False, duplicate)
            return Decision(
                True, [Check("all", True, "no restrictions: the account syncs every document")]
            )
        checks: list[Check] = [
            _OutcomeCheck(rule.name, rule.outcome(document))
            if isinstance(rule, _Attribute)
            else _RuleCheck(rule, rule.passes(document, clock), document, clock)
            for rule in self._rules
        ]
        checks = duplicate + checks
        return Decision(all(c.passed for c in checks), checks)

    def sql_filter(self, documents: sa.Table, now: datetime) -> sa.ColumnElement[bool] | None:
        """A WHERE clause selecting exactly the documents whose origins and
        period checks pass at ``now`` (None: no such checks, select all).

        That is a superset of what :meth:`evaluate` accepts; the caller still
        evaluates each candidate for the attribute checks. The clause is
        dialect-neutral Core and uses the indexed ``source``, ``company``,
        ``document_date`` and ``import_date`` columns.
        """
        clauses = [clause for _name, clause in self.sql_filters(documents, now)]
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else sa.and_(*clauses)

    def sql_filters(
        self, documents: sa.Table, now: datetime
    ) -> list[tuple[str, sa.ColumnElement[bool]]]:
        """:meth:`sql_filter`'s parts, one per check, named and in evaluation order.

        A document failing the first clause is excluded by that check, as
        :attr:`Decision.deciding` would say, so excluded documents can be
        counted per check in SQL without loading them.
        """
        clauses: list[tuple[str, sa.ColumnElement[bool]]] = []
        if self._origins is not None:
            clause = sql.origins_clause(
                documents,
                include=self._origins.include,
                sources=self._origins.sources,
                companies=self._origins.companies,
            )
            if clause is not None:
                clauses.append((self._origins.name, clause))
        if self._period is not None:
            window = self._clock_for(now).window
            assert window is not None
            if self._period.by_import:
                clause = sql.import_date_clause(documents, window, self.tz)
            else:
                clause = sql.document_date_clause(
                    documents, window, missing_ok=self._period.missing_ok
                )
            clauses.append((self._period.name, clause))
        return clauses


class _RuleCheck(Check):
    """A Check whose reason the rule formats on first access (one object per check)."""

    __slots__ = ("_clock", "_doc", "_rule")

    def __init__(self, rule: _Rule, passed: bool, doc: Document, clock: _Clock) -> None:
        self.name = rule.name
        self.passed = passed
        self._reason = ""
        self._rule = rule
        self._doc = doc
        self._clock = clock

    @property
    def reason(self) -> str:
        reason = self._reason
        if not isinstance(reason, str) or not reason:
            reason = self._rule.reason(self._doc, self._clock, self.passed)
            self._reason = reason
        return reason


class _OutcomeCheck(Check):
    """A Check read from an attribute check's outcome (its reason read on access)."""

    __slots__ = ("_outcome",)

    def __init__(self, name: str, outcome: CheckOutcome) -> None:
        self.name = name
        self.passed = outcome.passed
        self._reason = ""
        self._outcome = outcome

    @property
    def reason(self) -> str:
        return self._outcome.reason


def _attribute_rules(
    config: AttributesConfig, checks: Mapping[str, type[AttributeCheck]] | None
) -> list[_Rule]:
    """One rule per attribute key given: the built-in keys in their fixed
    order (SPEC section 2), then the plugins' keys in the order written."""
    from invoicesync.connectors_builtin.checks import BUILTIN_CHECKS

    builtin = {c.key: c for c in BUILTIN_CHECKS}
    registered = builtin if checks is None else checks
    rules: list[_Rule] = []
    for key in BUILTIN_ATTRIBUTES:
        value = getattr(config, key)
        if value is None:
            continue
        # Validated already, by the very type the check's Options wraps.
        builtin_check = registered.get(key) or builtin[key]
        rules.append(_Attribute(key, builtin_check(_options(builtin_check, value))))
    for key, value in config.plugin_options().items():
        check = registered.get(key)
        if check is None:
            known = ", ".join(sorted({*BUILTIN_ATTRIBUTES, *registered}))
            raise ConfigurationError(
                f"restrictions.attributes.{key}: unknown attribute check {key!r}; known: {known}"
            )
        try:
            options: BaseModel = validate_check_options(key, value, check)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigurationError(f"restrictions.attributes.{where}: {first['msg']}") from None
        rules.append(_Attribute(key, check(options)))
    return rules


def _options(check: type[AttributeCheck], value: Any) -> BaseModel:
    """A built-in attribute's validated value as its check's ``Options``."""
    if isinstance(value, BaseModel):
        return value
    assert issubclass(check.Options, RootModel)
    return check.Options.model_construct(value)


def compile_restrictions(
    config: RestrictionsConfig | None,
    tz: ZoneInfo,
    checks: Mapping[str, type[AttributeCheck]] | None = None,
    skip_duplicates: bool = False,
) -> Evaluator:
    """Build the evaluator for one account.

    ``checks`` are the registered attribute checks (``PluginRegistry.checks``);
    None means the built-in ones only. Plugin check values that the
    configuration loader already validated (with a ``checks`` context) are
    used as they are; others are validated here, and an unknown key raises
    :class:`ConfigurationError`.
    """
    return Evaluator(config, tz, checks, skip_duplicates)
