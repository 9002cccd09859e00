"""Names that collide or mislead elsewhere (issue 10 item 11), through the CLI.

``Café``, ``café`` and ``CAFÉ`` are three names on ext4 but one file on a
Windows share, macOS or many Nextcloud back-ends: with ``portable_names``
they get names that differ in more than case, and Windows-reserved names and
trailing dots are avoided. Bidirectional overrides (``a\\u202eFDP.exe.pdf``
displays as ``aexe.PDF``) are removed from every account's names.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from fixtures.cli import run_cli, write_config

CONFIG = """version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - id: inbox
    type: folder
    options: {path: ./inbox}
exports:
  - id: plain
    type: folder
    filename: "{filename}.{ext}"
    options: {path: ./plain}
  - id: portable
    type: folder
    filename: "{number|filename}.{ext}"
    portable_names: true
    options: {path: ./portable}
  - id: folders
    type: folder
    filename: "{number}/{filename}.{ext}"
    portable_names: true
    options: {path: ./folders}
"""


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.endswith(".json")}


def test_portable_names_never_collide_case_insensitively(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i, name in enumerate(["Café.pdf", "café.pdf", "CAFE\u0301.pdf", "CON.pdf", "com1.pdf"]):
        (inbox / name).write_bytes(f"%PDF-1.4 {i}".encode())
    (inbox / "trailing.pdf").write_bytes(b"%PDF-1.4 t")
    (inbox / "trailing.json").write_text('{"number": "RE 7. "}')
    (inbox / "a\u202eFDP.exe.pdf").write_bytes(b"%PDF-1.4 rlo")
    config = write_config(tmp_path / "invoicesync.yaml", CONFIG)
    result = run_cli("sync", config=config)
    assert result.returncode == 0, result.stderr

    portable = names(tmp_path / "portable")
    assert len(portable) == 7
    folded = {unicodedata.normalize("NFC", n).casefold() for n in portable}
    assert len(folded) == 7, sorted(portable)  # no two are one file on Windows or macOS
    assert "_CON.pdf" in portable and "_com1.pdf" in portable
    # Windows drops a trailing dot or space: "RE 7." and "RE 7" would be one folder.
    assert "RE 7_" in {p.name for p in (tmp_path / "folders").iterdir()}
    assert not any(n.upper().split(".")[0] in ("CON", "COM1") for n in portable)

    plain = names(tmp_path / "plain")
    assert "CON.pdf" in plain  # only portable accounts avoid Windows' names
    for folder_names in (plain, portable):
        assert "aFDP.exe.pdf" in folder_names  # the override is gone everywhere
        assert not any("\u202e" in n for n in folder_names)

    again = run_cli("sync", config=config)  # names are kept: nothing new, nothing renamed
    assert again.returncode == 0, again.stderr
    assert names(tmp_path / "portable") == portable


def test_bidi_overrides_are_removed_from_every_name(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a\u202eFDP.exe.pdf").write_bytes(b"%PDF-1.4 rlo")
    (inbox / "b\u2067x\u2069\u200f.pdf").write_bytes(b"%PDF-1.4 isolate")
    plain_only = CONFIG.split("  - id: portable")[0]
    config = write_config(tmp_path / "invoicesync.yaml", plain_only)
    result = run_cli("sync", config=config)
    assert result.returncode == 0, result.stderr
    assert names(tmp_path / "plain") == {"aFDP.exe.pdf", "bx.pdf"}
