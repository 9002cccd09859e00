"""Fuzzing the folder source's sidecar reader (issue 10's fuzz test, item 2).

Whatever a sidecar holds -- byte noise, JSON of any shape, the document
fields with hostile values (amounts like ``1e999999999``, huge integers,
control characters, deep nesting) -- the reader either returns metadata or
raises a SidecarError; never another exception, and never more than a bounded
amount of memory (tracemalloc peak per example). Through the source, the
document with that sidecar is imported or skipped with a reason naming the
sidecar, and the file after it still imports. Bounded in time by the number
of examples, not by a clock.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invoicesync.connectors_builtin.folder import FolderSource, FolderSourceOptions
from invoicesync.connectors_builtin.folder.sidecar import (
    MAX_SIDECAR_BYTES,
    SidecarError,
    parse_sidecar_bytes,
)
from invoicesync.plugins import ConnectorContext, DocumentMetadata, SkippedDocument, SourceDocument

MEMORY_BOUND = 64 * 1024 * 1024
FIELDS = [*DocumentMetadata.model_fields, "id", "sha256", "revision", "documnet_date", ""]

hostile_numbers = st.sampled_from(
    [
        "1e999999999", "-1E+1000000", "1e-999999999", "0e999999999", "0E-999999999",
        "1.5e3", "9" * 16, "0.0000001", "1.50000000", "NaN", "-Infinity", "sNaN",
        "1_000", " 12.10 ", "١٢", "0x1F", "", "-0",
    ]
)  # fmt: skip
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
    hostile_numbers,
    st.text(max_size=30),
    st.text(alphabet="\x00\x1b\u202e\ufeffab\n", max_size=10),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
documents = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)


@st.composite
def raw_numbers(draw: st.DrawFn) -> bytes:
    """JSON with unquoted numbers the JSON parser itself must cope with."""
    field = draw(st.sampled_from(["gross_amount", "net_amount", "number", "fields"]))
    mantissa = draw(st.sampled_from(["1", "-1", "0", "9" * 40, "1.5", "0.000"]))
    exponent = draw(st.sampled_from(["", "e999999999", "E-999999999", "e+17", "e5000"]))
    number = mantissa + exponent
    value = f'{{"k": {number}}}' if field == "fields" else number
    return f'{{"{field}": {value}}}'.encode()


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 200_000))
    opener = draw(st.sampled_from(["[", '{"a":']))
    return b'{"fields": ' + opener.encode() * depth


sidecars = st.one_of(
    st.binary(max_size=300),
    documents.map(lambda d: json.dumps(d).encode()),
    documents.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    raw_numbers(),
    nested(),
    st.sampled_from(
        [
            b"\xef\xbb\xbf{}",
            b'{"number": "1", "number": "2"}',
            b" " * (MAX_SIDECAR_BYTES + 1),
            b'{"note": "' + b"x" * (MAX_SIDECAR_BYTES - 20) + b'"}',
            b'{"n": ' + b"9" * 5000 + b"}",
        ]
    ),
)

FUZZ = settings(
    max_examples=300,
    deadline=None,  # bounded by the number of examples, not by a clock
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(raw=sidecars)
def test_the_reader_returns_metadata_or_a_sidecar_error(raw: bytes) -> None:
    tracemalloc.start()
    try:
        try:
            meta = parse_sidecar_bytes(raw, "acme")
        except SidecarError as exc:
            message = str(exc)
            assert message and "Traceback" not in message
            assert "\x00" not in message and "\x1b" not in message
        else:
            assert isinstance(meta, DocumentMetadata)
            for amount in (meta.gross_amount, meta.net_amount):
                if amount is not None:
                    # Arithmetic on what was accepted never overflows.
                    assert abs(amount) < 10**15 and amount.as_tuple().exponent >= -6
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{peak} bytes to read a {len(raw)}-byte sidecar"


@pytest.fixture(scope="module")
def inbox() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="sidecar-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@settings(FUZZ, max_examples=100)
@given(raw=sidecars)
def test_through_the_source_one_sidecar_is_one_documents_business(inbox: Path, raw: bytes) -> None:
    root = inbox / "root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "a.pdf").write_bytes(b"%PDF-1.4 a")
    (root / "a.json").write_bytes(raw)
    (root / "b.pdf").write_bytes(b"%PDF-1.4 b")
    options = FolderSourceOptions(path=root, company="acme")
    source = FolderSource("inbox", options, ConnectorContext("inbox", inbox / "state"))
    items: list[Any] = []
    for item in source.fetch(None):  # no exception may come out of the run
        items.append(item)
    assert [i.external_id for i in items] == ["a.pdf", "b.pdf"]
    first, second = items
    assert isinstance(second, SourceDocument)
    if isinstance(first, SkippedDocument):
        assert first.reason.startswith("sidecar a.json: ")
    else:
        assert isinstance(first, SourceDocument)
