"""ExtractionInput over an open file: its reads never move the engine's position."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from invoicesync.plugins import extractors
from invoicesync.plugins.extractors import ExtractionInput


@pytest.mark.parametrize("positional", ["preadv", "pread"])
def test_reads_through_an_open_file_give_its_bytes_and_leave_its_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, positional: str
) -> None:
    if positional == "pread":  # the platforms without os.preadv
        monkeypatch.setattr(extractors, "_preadv", None)
    elif extractors._preadv is None:
        pytest.skip("this platform has no os.preadv")
    content = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "a.pdf"
    path.write_bytes(content)
    with path.open("rb") as file:
        file.read(5)  # the engine's own position
        document = ExtractionInput(filename="a.pdf", media_type=None, content=file)
        assert document.head(1024) == content[:1024]
        with document.open() as stream:
            assert stream.read(10) == content[:10]
            assert stream.read(1 << 20) == content[10 : 10 + (1 << 20)]
            assert stream.read() == content[10 + (1 << 20) :]
            assert stream.read(1 << 20) == b""
        assert document.size == len(content)
        assert file.tell() == 5
        assert file.read() == content[5:]
