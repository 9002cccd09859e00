"""Company assignment rules: sender, file name and field conditions; first match wins."""

from __future__ import annotations

import pytest
from invoicesync.daemon.config.models import CompanyRule
from invoicesync.daemon.engine.companies import assign_company
from invoicesync.plugins import DocumentMetadata, SourceDocument

RULES = [
    CompanyRule(company="telekom", sender="telekom.de"),
    CompanyRule(company="acme", filename="ACME-*.pdf"),
    CompanyRule(company="beta", field={"supplier_no": "4711"}),
    CompanyRule(company="gamma", sender="*@gamma.example", filename="*.xml"),
]


def item(filename: str = "x.pdf", company: str | None = "default", **fields: str) -> SourceDocument:
    return SourceDocument(
        "id", filename, b"x", metadata=DocumentMetadata(company=company, fields=fields)
    )


@pytest.mark.parametrize(
    "doc, expected",
    [
        (item(mail_from="Rechnung <billing@telekom.de>"), "telekom"),
        (item(mail_from="billing@mail.telekom.de"), "telekom"),  # subdomains count
        (item(mail_from="billing@nottelekom.de"), "default"),
        (item("acme-2026-01.PDF"), "acme"),  # globs are case-insensitive
        (item(supplier_no="4711"), "beta"),
        (item(supplier_no="4712"), "default"),
        (item("a.xml", mail_from="x@gamma.example"), "gamma"),  # all conditions hold
        (item("a.pdf", mail_from="x@gamma.example"), "default"),  # one does not
        (item("ACME-1.pdf", mail_from="x@telekom.de"), "telekom"),  # the first rule wins
        (item(company=None), None),
    ],
)
def test_first_matching_rule_sets_the_company(doc: SourceDocument, expected: str | None) -> None:
    assert assign_company(RULES, doc).metadata.company == expected


def test_a_rule_needs_a_condition() -> None:
    with pytest.raises(ValueError, match="at least one of sender, filename or field"):
        CompanyRule(company="acme")
