"""``split_remote_name``: the one remote-name check of every export target.

Tested here once, thoroughly; the built-in targets (folder, sftp, webdav,
s3, rclone) call it, and the conformance suite's hostile names prove each
does.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from invoicesync.daemon.naming import sanitize_component
from invoicesync.plugins import (
    CONTROL_CHARACTERS,
    MAX_COMPONENT_BYTES,
    PermanentError,
    split_remote_name,
)

ACCEPTED = [
    ("invoice.pdf", ["invoice.pdf"]),
    ("ACME GmbH/2024/R-1.pdf", ["ACME GmbH", "2024", "R-1.pdf"]),
    ("Müller & Söhne (#1)/Rechnung €.pdf", ["Müller & Söhne (#1)", "Rechnung €.pdf"]),
    ("a..b/c.d.e", ["a..b", "c.d.e"]),  # dots inside a component are fine
    ("x" * 255, ["x" * 255]),
    ("ä" * 127 + "x", ["ä" * 127 + "x"]),  # 255 bytes exactly
    ("日本語/請求書.pdf", ["日本語", "請求書.pdf"]),
]

REFUSED = [
    ("", "empty"),
    ("/etc/passwd", "relative path"),
    ("../up.pdf", r"'\.\.'"),
    ("a/../b.pdf", r"'\.\.'"),
    ("./a.pdf", r"'\.'"),
    ("a//b.pdf", "empty"),
    ("a/", "empty"),
    (".hidden.pdf", "hidden component"),
    ("a/.git/config", "hidden component"),
    ("a\\..\\b.pdf", "does not accept"),
    ("nul\x00byte.pdf", "control characters"),
    ("new\nline.pdf", "control characters"),
    ("tab\t.pdf", "control characters"),
    ("esc\x1b[31m.pdf", "control characters"),
    ("del\x7f.pdf", "control characters"),
    ("c1\x85.pdf", "control characters"),  # NEL, a C1 control
    ("c1\x9b31m.pdf", "control characters"),  # CSI
    ("lone\ud800.pdf", "not valid UTF-8"),
    ("x" * 256, "longer than 255 bytes"),
    ("ä" * 128, "longer than 255 bytes"),  # 256 bytes, 128 characters
    ("ok/" + "y" * 300 + ".pdf", "longer than 255 bytes"),
]


@pytest.mark.parametrize(("name", "parts"), ACCEPTED, ids=[n[:30] for n, _ in ACCEPTED])
def test_accepted_names_split_into_components(name: str, parts: list[str]) -> None:
    assert split_remote_name(name) == parts


@pytest.mark.parametrize(("name", "why"), REFUSED, ids=[repr(n)[:30] for n, _ in REFUSED])
def test_unsafe_names_are_refused_for_good(name: str, why: str) -> None:
    with pytest.raises(PermanentError, match=f"refusing remote name .*{why}"):
        split_remote_name(name)


def test_a_target_may_forbid_more_characters_and_shorten_the_limit() -> None:
    with pytest.raises(PermanentError, match="does not accept : \\?"):
        split_remote_name("a/b?:c.pdf", forbidden='\\:?"')
    assert split_remote_name("a/b.pdf", forbidden='\\:?"') == ["a", "b.pdf"]
    with pytest.raises(PermanentError, match="longer than 10 bytes"):
        split_remote_name("abcdefghijk", max_component_bytes=10)


def test_the_message_never_grows_unbounded() -> None:
    with pytest.raises(PermanentError) as refused:
        split_remote_name("\x00" + "z" * 10_000)
    assert len(str(refused.value)) < 400


def test_control_characters_are_unicode_category_cc() -> None:
    import unicodedata

    for code in range(0x250):
        char = chr(code)
        assert bool(CONTROL_CHARACTERS.search(char)) == (unicodedata.category(char) == "Cc")


# Text a document's metadata can carry (no lone surrogates: see the report of issue 12).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@given(st.lists(_TEXT, min_size=1, max_size=4))
def test_every_name_the_engine_produces_passes(components: list[str]) -> None:
    """The engine's sanitiser and the targets' check agree: a rendered name
    is never refused by a target for being unsafe."""
    name = "/".join(sanitize_component(c) for c in components)
    parts = split_remote_name(name)
    assert len(parts) == len(components)
    assert all(len(p.encode("utf-8")) <= MAX_COMPONENT_BYTES for p in parts)
