"""Filename templates: placeholders, formats, sanitisation, hostile values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from invoicesync.daemon.naming import (
    DEFAULT_TEMPLATE,
    FilenameTemplate,
    sanitize_component,
    with_suffix_before_extension,
)
from invoicesync.plugins.models import Document

BERLIN = ZoneInfo("Europe/Berlin")


def doc(**overrides: object) -> Document:
    data: dict[str, object] = {
        "id": "portal/inv-1",
        "source": "portal",
        "external_id": "inv-1",
        "import_date": datetime(2026, 3, 31, 22, 30, tzinfo=UTC),
        "filename": "Rechnung März.pdf",
        "media_type": "application/pdf",
        "size": 10,
        "sha256": "ab" * 32,
        "company": "acme",
        "type": "incoming_invoice",
        "number": "RE-1",
        "document_date": date(2026, 3, 15),
    }
    data.update(overrides)
    return Document.model_validate(data)


def test_default_template_renders_company_year_and_date() -> None:
    name = FilenameTemplate.parse(DEFAULT_TEMPLATE).render(doc(), BERLIN)
    assert name == "acme/2026/2026-03-15_incoming_invoice_RE-1.pdf"


def test_import_date_is_the_local_day() -> None:
    # 22:30 UTC on 31 March is 00:30 on 1 April in Berlin (summer time).
    name = FilenameTemplate.parse("{import_date}/{sha8}.{ext}").render(doc(), BERLIN)
    assert name == "2026-04-01/abababab.pdf"


def test_missing_values_render_as_unknown() -> None:
    name = FilenameTemplate.parse(DEFAULT_TEMPLATE).render(
        doc(company=None, number=None, document_date=None), BERLIN
    )
    # The default template falls back to the original file name (SPEC 11).
    assert name == "unknown/unknown/unknown_incoming_invoice_Rechnung März.pdf"
    name = FilenameTemplate.parse("{company}_{number}.{ext}").render(doc(number=None), BERLIN)
    assert name == "acme_unknown.pdf"


def test_fallback_takes_the_first_placeholder_with_a_value() -> None:
    template = FilenameTemplate.parse("{number|filename}.{ext}")
    assert template.render(doc(), BERLIN) == "RE-1.pdf"
    assert template.render(doc(number=None), BERLIN) == "Rechnung März.pdf"
    assert template.placeholders == {"number", "filename", "ext"}
    dated = FilenameTemplate.parse("{due_date|document_date:%Y-%m}.{ext}")
    assert dated.render(doc(), BERLIN) == "2026-03.pdf"
    both_missing = FilenameTemplate.parse("{currency|company}")
    assert both_missing.render(doc(company=None), BERLIN) == "unknown"


@pytest.mark.parametrize(
    "template",
    ["{number|}", "{number|nope}", "{number|filename:%Y}", "{number|a.b}"],
)
def test_bad_fallbacks_are_configuration_errors(template: str) -> None:
    with pytest.raises(ValueError):
        FilenameTemplate.parse(template)


@pytest.mark.parametrize(
    "template, message",
    [
        ("{number.__class__}", "no attribute or index access"),
        ("{number[0]}", "no attribute or index access"),
        ("{nope}", "unknown placeholder {nope}"),
        ("{number!r}", "conversions are not allowed"),
        ("{number:>10}", "only dates take a format"),
        ("{document_date:{number}}", "strftime"),
        ("/abs/{number}", "relative"),
        ("{number", "invalid template"),
        ("", "empty"),
    ],
)
def test_unsafe_or_wrong_templates_are_rejected(template: str, message: str) -> None:
    with pytest.raises(
        ValueError,
        match=message.replace("{", r"\{")
        .replace("}", r"\}")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        FilenameTemplate.parse(template)


@pytest.mark.parametrize(
    "number",
    ["../../etc/passwd", "..", "/etc/passwd", "a\\..\\..\\b", "x\x00y", ".hidden", "a\nb"],
)
def test_hostile_values_cannot_leave_their_component(number: str) -> None:
    # model_copy skips validation (which already refuses control characters):
    # the renderer must be safe on its own.
    hostile = doc().model_copy(update={"number": number})
    name = FilenameTemplate.parse("{company}/{number}.{ext}").render(hostile, BERLIN)
    parts = name.split("/")
    assert len(parts) == 2 and parts[0] == "acme"
    assert all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)
    assert "\x00" not in name and "\n" not in name and "\\" not in name


def test_components_are_capped_at_255_bytes_keeping_the_extension() -> None:
    name = FilenameTemplate.parse("{company}/{number}.{ext}").render(doc(number="ü" * 400), BERLIN)
    last = name.split("/")[-1]
    assert len(last.encode()) <= 255 and last.endswith(".pdf")
    last.encode().decode("utf-8")  # still whole characters


def test_sanitize_component_edges() -> None:
    assert sanitize_component("..") == "__"
    assert sanitize_component("...x") == "___x"
    assert sanitize_component("   ") == "unknown"
    assert sanitize_component("a/b\\c") == "a_b_c"


def test_suffix_goes_before_the_extension() -> None:
    assert with_suffix_before_extension("a/b.pdf", "_12345678") == "a/b_12345678.pdf"
    assert with_suffix_before_extension("noext", "_1") == "noext_1"


def test_a_dots_only_value_keeps_the_extension() -> None:
    hostile = doc().model_copy(update={"number": "..", "company": "..."})
    name = FilenameTemplate.parse("{company}/{number}.{ext}").render(hostile, BERLIN)
    assert name == "___/__.pdf"


@pytest.mark.parametrize(
    ("component", "portable"),
    [
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Nul.tar.gz", "_Nul.tar.gz"),
        ("COM1", "_COM1"),
        ("lpt9.pdf", "_lpt9.pdf"),
        ("COM10.pdf", "COM10.pdf"),
        ("console.pdf", "console.pdf"),
        ("RE 7.", "RE 7_"),
        ("RE 7. . ", "RE 7_"),
        ('a<b>c:d"e|f?g*h.pdf', "a_b_c_d_e_f_g_h.pdf"),
        ("Café.pdf", "Café.pdf"),
    ],
)
def test_portable_component(component: str, portable: str) -> None:
    from invoicesync.daemon.naming import portable_component

    assert portable_component(component) == portable
    assert portable_component(portable) == portable  # idempotent


def test_bidi_controls_are_removed_by_the_sanitiser() -> None:
    from invoicesync.daemon.naming import sanitize_component

    assert sanitize_component("a\u202eFDP.exe.pdf") == "aFDP.exe.pdf"
    assert sanitize_component("\u2066x\u2069\u200e\u200f\u061c\u202a.pdf") == "x.pdf"


def test_folded_names_treat_case_and_composition_as_one_name() -> None:
    from invoicesync.daemon.naming import FoldedNames, name_key

    assert name_key("Café") == name_key("CAFE\u0301") == name_key("café")
    assert name_key("Straße") == name_key("STRASSE")
    held = FoldedNames([("a/Café.pdf", "doc-1")])
    assert list(held.free("doc-2", ["a/CAFÉ.pdf", "a/café_1.pdf"])) == ["a/café_1.pdf"]
    assert list(held.free("doc-1", ["a/CAFÉ.pdf"])) == ["a/CAFÉ.pdf"]  # its own name
    held.hold("a/café_1.pdf", "doc-2")
    assert list(held.free("doc-3", ["A/CAFÉ_1.PDF"])) == []
