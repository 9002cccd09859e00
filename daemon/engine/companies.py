"""Company assignment rules: the first matching rule sets a document's company."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from fnmatch import fnmatchcase

from invoicesync.daemon.config.models import CompanyRule
from invoicesync.plugins.models import SourceDocument

#: Where sources put the sender address of a mailed document (``fields``).
SENDER_FIELD = "mail_from"


def _sender_matches(pattern: str, sender: str | None) -> bool:
    if not sender:
        return False
    sender = sender.strip().lower()
    if "<" in sender and ">" in sender:  # "ACME <billing@acme.de>"
        sender = sender[sender.index("<") + 1 : sender.index(">")]
    pattern = pattern.strip().lower()
    if any(ch in pattern for ch in "*?["):
        return fnmatchcase(sender, pattern)
    if "@" in pattern:
        return sender == pattern
    # A bare domain matches the domain and its subdomains.
    domain = sender.rpartition("@")[2]
    return domain == pattern or domain.endswith("." + pattern)


def rule_matches(rule: CompanyRule, item: SourceDocument) -> bool:
    """All conditions the rule gives hold for ``item``."""
    fields = item.metadata.fields
    if rule.sender is not None and not _sender_matches(rule.sender, fields.get(SENDER_FIELD)):
        return False
    if rule.filename is not None and not fnmatchcase(item.filename.lower(), rule.filename.lower()):
        return False
    return not rule.field or all(fields.get(k) == v for k, v in rule.field.items())


def assign_company(rules: Sequence[CompanyRule], item: SourceDocument) -> SourceDocument:
    """``item`` with the company of the first matching rule (unchanged if none match)."""
    for rule in rules:
        if rule_matches(rule, item):
            if item.metadata.company == rule.company:
                return item
            metadata = item.metadata.model_copy(update={"company": rule.company})
            return replace(item, metadata=metadata)
    return item
