"""An export plan is a value: per candidate, export it (under which name, and
why) or skip it (and why).

:func:`plan` reads the account's candidates from storage and decides each with
the account's restriction evaluator and filename template; it changes nothing.
The exporter carries the actions out (``exporter.run_export``); a dry run
turns them into the lines it prints. Keeping the decision a value lets both
share one path, and lets later work batch actions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from invoicesync.daemon.config.models import ExportConfig, OnUpdate
from invoicesync.daemon.naming import (
    FilenameTemplate,
    portable_component,
    sanitize_component,
    with_suffix_before_extension,
)
from invoicesync.daemon.restrictions import Evaluator
from invoicesync.daemon.storage.candidates import (
    Candidate,
    candidates,
    count_candidates,
    count_failing,
)
from invoicesync.daemon.storage.ledger import LedgerState
from invoicesync.daemon.storage.schema import documents
from invoicesync.plugins.models import Document

from .runtime import Runtime

__all__ = [
    "Action",
    "ActionKind",
    "Planner",
    "account_candidate_count",
    "account_candidates",
    "action_reason",
    "name_choices",
    "plan",
    "pushed_exclusions",
]


class ActionKind(StrEnum):
    EXPORT = "export"
    SKIP = "skip"


@dataclass(frozen=True)
class Action:
    """One decision of an export plan."""

    kind: ActionKind
    candidate: Candidate
    reason: str
    """Export: why it goes (new, retry, changed content; the checks passed).
    Skip: the deciding check's reason."""
    remote_name: str | None = None
    """Export: the name the document holds in the account (``keeps_name``), or
    the template's name; if another document holds that one, the first free
    of :func:`name_choices` is taken when the action is carried out."""
    keeps_name: bool = False
    excluded_by: str | None = None
    """Skip: the name of the deciding check."""

    @property
    def document(self) -> Document:
        return self.candidate.document


def action_reason(candidate: Candidate) -> str:
    """Why a candidate is (re-)exported, for logs and dry-run lines."""
    if candidate.state is None:
        return "new"
    if candidate.state is LedgerState.EXPORTING:
        return "resume interrupted export"
    if candidate.state is LedgerState.FAILED:
        return "retry after failure"
    return f"content changed (revision {candidate.document.revision})"


def name_choices(document: Document, base: str) -> Iterator[str]:
    """``base``, then ``base`` with ``_{sha8}``, then ``_{sha8}-2`` ... ``-99``."""
    yield base
    yield with_suffix_before_extension(base, f"_{document.sha8}")
    for n in range(2, 100):
        yield with_suffix_before_extension(base, f"_{document.sha8}-{n}")


class Planner:
    """Decides for one account: the evaluator's verdict and the remote name."""

    def __init__(
        self,
        account: ExportConfig,
        evaluator: Evaluator,
        template: FilenameTemplate,
        tz: ZoneInfo,
        target_sanitize: Callable[[str], str],
    ) -> None:
        self.account = account
        self.evaluator = evaluator
        self.template = template
        self.tz = tz
        self.target_sanitize = target_sanitize

    def fresh_name(self, document: Document) -> str:
        """The template rendered, each component sanitised by the target, then by us."""
        rendered = self.template.render(document, self.tz)
        parts = (sanitize_component(self.target_sanitize(part)) for part in rendered.split("/"))
        if self.account.portable_names:
            parts = (portable_component(part) for part in parts)
        return "/".join(parts)

    def decide(self, candidate: Candidate, now: datetime) -> Action:
        document = candidate.document
        # The run's one evaluation time, the same the SQL pre-filter used: a
        # run that crosses midnight must not judge documents by two days.
        decision = self.evaluator.evaluate(document, now)
        if not decision.export:
            deciding = decision.deciding
            return Action(
                ActionKind.SKIP,
                candidate,
                deciding.reason if deciding else "",
                excluded_by=deciding.name if deciding else "?",
            )
        reason = f"{action_reason(candidate)}; {decision.summary}"
        if candidate.remote_name:
            return Action(ActionKind.EXPORT, candidate, reason, candidate.remote_name, True)
        return Action(ActionKind.EXPORT, candidate, reason, self.fresh_name(document))


def account_candidates(rt: Runtime, account: ExportConfig, now: datetime) -> Iterator[Candidate]:
    """The candidates of ``account`` at ``now`` (see :mod:`..storage.candidates`)."""
    evaluator = rt.evaluators[account.id]
    # A dry run evaluates every candidate in Python so that its summary can
    # say which check excluded how many; real runs let SQL drop the documents
    # that origins and period exclude (same verdicts, far fewer rows).
    restrict = None if rt.dry_run else (lambda table: evaluator.sql_filter(table, now))
    return candidates(
        rt.engine,
        account.id,
        now,
        include_changed=account.on_update is OnUpdate.EXPORT,
        restrict=restrict,
    )


def account_candidate_count(rt: Runtime, account: ExportConfig, now: datetime) -> int:
    """How many candidates :func:`account_candidates` yields (a progress bar's total)."""
    evaluator = rt.evaluators[account.id]
    restrict = None if rt.dry_run else (lambda table: evaluator.sql_filter(table, now))
    return count_candidates(
        rt.engine,
        account.id,
        now,
        include_changed=account.on_update is OnUpdate.EXPORT,
        restrict=restrict,
    )


def pushed_exclusions(rt: Runtime, account: ExportConfig, now: datetime) -> dict[str, int]:
    """The candidates a real run's SQL pre-filter drops, per deciding check.

    Exactly what a dry run counts for them by evaluating each: the SQL checks
    come first in evaluation order, so the first clause a document fails is
    its deciding check.
    """
    return count_failing(
        rt.engine,
        account.id,
        now,
        rt.evaluators[account.id].sql_filters(documents, now),
        include_changed=account.on_update is OnUpdate.EXPORT,
    )


def plan(
    rt: Runtime,
    account: ExportConfig,
    now: datetime,
    target_sanitize: Callable[[str], str],
) -> Iterator[Action]:
    """The export plan of ``account`` at ``now``, one action per candidate, lazily."""
    planner = Planner(
        account, rt.evaluators[account.id], rt.templates[account.id], rt.config.tz, target_sanitize
    )
    for candidate in account_candidates(rt, account, now):
        yield planner.decide(candidate, now)
