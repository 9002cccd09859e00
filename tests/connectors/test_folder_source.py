"""The ``folder`` source: walking, sidecars (hostile ones too), symlinks, fingerprints."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from invoicesync.connectors_builtin.folder import FolderSource, FolderSourceOptions
from invoicesync.connectors_builtin.folder.sidecar import MAX_SIDECAR_BYTES
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import (
    ConnectorContext,
    ConnectorError,
    DocumentMetadata,
    DocumentType,
    PaymentStatus,
    SkippedDocument,
    SourceDocument,
    TransientError,
)
from pydantic import ValidationError

Item = SourceDocument | SkippedDocument


def make_source(root: Path, **options: object) -> FolderSource:
    opts = FolderSourceOptions.model_validate({"path": str(root), **options})
    return FolderSource("inbox", opts, ConnectorContext("inbox", root.parent / "state"))


def fetch(root: Path, **options: object) -> dict[str, Item]:
    gen = make_source(root, **options).fetch(None)
    items: dict[str, Item] = {}
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            assert stop.value is None
            return items
        assert item.external_id not in items, f"yielded twice: {item.external_id}"
        items[item.external_id] = _read_now(item)


def _read_now(item: Item) -> Item:
    """The item with its content as bytes, read before the walk goes on (and closes it)."""
    if isinstance(item, SourceDocument) and isinstance(item.content, Path):
        return dataclasses.replace(item, content=item.content.read_bytes())
    if isinstance(item, SourceDocument) and not isinstance(item.content, bytes):
        assert not item.content.closed
        item.content.seek(0)
        return dataclasses.replace(item, content=item.content.read())
    return item


def docs(items: dict[str, Item]) -> dict[str, SourceDocument]:
    return {k: v for k, v in items.items() if isinstance(v, SourceDocument)}


def skipped(items: dict[str, Item]) -> dict[str, str]:
    return {k: v.reason for k, v in items.items() if isinstance(v, SkippedDocument)}


def write(path: Path, content: str | bytes = b"%PDF-1.4 test\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def test_registered_as_builtin_plugin() -> None:
    assert load_plugins(entry_points=False).sources["folder"] is FolderSource


def test_every_file_is_a_document_with_its_relative_posix_path(root: Path) -> None:
    write(root / "b.pdf")
    write(root / "a.xml", "<invoice/>")
    write(root / "2025" / "03" / "scan 1.pdf")
    write(root / "noext")
    items = fetch(root)
    assert list(items) == ["2025/03/scan 1.pdf", "a.xml", "b.pdf", "noext"]  # sorted walk
    doc = docs(items)["2025/03/scan 1.pdf"]
    assert doc.filename == "scan 1.pdf"
    assert doc.content == b"%PDF-1.4 test\n"  # read from the handle the walk opened
    assert doc.media_type == "application/pdf"
    assert docs(items)["a.xml"].media_type in ("application/xml", "text/xml")
    assert doc.cursor is None
    assert doc.metadata == DocumentMetadata()


def test_recursive_false_stays_in_the_top_folder(root: Path) -> None:
    write(root / "top.pdf")
    write(root / "sub" / "deep.pdf")
    assert list(fetch(root, recursive=False)) == ["top.pdf"]


def test_company_option_is_the_default_company(root: Path) -> None:
    write(root / "a.pdf")
    assert docs(fetch(root, company="acme"))["a.pdf"].metadata.company == "acme"


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.pdf",
        "download.pdf.part",
        "x.tmp",
        "notes.txt~",
        "f.pdf.crdownload",
        ".x.pdf.invoicesync-tmp-abc123",
        ".git/config",
        ".stfolder/x.pdf",
    ],
)
def test_hidden_and_temporary_files_are_ignored(root: Path, name: str) -> None:
    write(root / name)
    write(root / "real.pdf")
    assert list(fetch(root)) == ["real.pdf"]


def test_fifo_is_ignored_not_read(root: Path) -> None:
    os.mkfifo(root / "pipe.pdf")  # reading it would block the fetch forever
    write(root / "real.pdf")
    assert list(fetch(root)) == ["real.pdf"]


FULL_SIDECAR = {
    "number": "RE-2025-0042",
    "type": "incoming_invoice",
    "document_date": "2025-03-01",
    "due_date": "2025-03-31",
    "company": "telekom",
    "tags": ["travel", "Private"],
    "net_amount": "100.00",
    "gross_amount": 119.00,
    "currency": "eur",
    "payment_status": "partially_paid",
    "approved": True,
    "note": "Line one\nline two",
    "fields": {"cost_center": "4711", "project": "apollo"},
}


def test_sidecar_fields_become_metadata(root: Path) -> None:
    write(root / "scan.pdf")
    write(root / "scan.json", json.dumps(FULL_SIDECAR))
    items = fetch(root, company="acme")
    assert list(items) == ["scan.pdf"]  # the sidecar is not a document itself
    meta = docs(items)["scan.pdf"].metadata
    assert meta == DocumentMetadata(
        number="RE-2025-0042",
        type=DocumentType.INCOMING_INVOICE,
        document_date=date(2025, 3, 1),
        due_date=date(2025, 3, 31),
        company="telekom",  # the sidecar overrides the option
        tags=frozenset({"travel", "Private"}),
        net_amount=Decimal("100.00"),
        gross_amount=Decimal("119.00"),
        currency="EUR",
        payment_status=PaymentStatus.PARTIALLY_PAID,
        approved=True,
        note="Line one\nline two",
        fields={"cost_center": "4711", "project": "apollo"},
    )


def test_integer_number_and_field_values_become_strings(root: Path) -> None:
    write(root / "a.pdf")
    write(root / "a.json", '{"net_amount": 12.10, "number": 4711, "fields": {"cc": 4712}}')
    meta = docs(fetch(root))["a.pdf"].metadata
    assert str(meta.net_amount) == "12.10"
    assert meta.number == "4711"
    assert meta.fields == {"cc": "4712"}


def test_sidecar_company_null_clears_the_default(root: Path) -> None:
    write(root / "a.pdf")
    write(root / "a.json", '{"company": null}')
    assert docs(fetch(root, company="acme"))["a.pdf"].metadata.company is None


def test_name_dot_json_sidecar_wins_over_stem_sidecar(root: Path) -> None:
    write(root / "scan.pdf")
    write(root / "scan.pdf.json", '{"number": "from-name"}')
    write(root / "scan.json", '{"number": "from-stem"}')
    items = fetch(root)
    assert list(items) == ["scan.pdf"]  # both sidecars are claimed
    assert docs(items)["scan.pdf"].metadata.number == "from-name"


def test_stem_sidecar_is_shared_by_files_with_the_same_stem(root: Path) -> None:
    write(root / "inv.pdf")
    write(root / "inv.xml", "<x/>")
    write(root / "inv.json", '{"number": "7"}')
    items = docs(fetch(root))
    assert set(items) == {"inv.pdf", "inv.xml"}
    assert {d.metadata.number for d in items.values()} == {"7"}


def test_lone_json_file_is_a_document(root: Path) -> None:
    write(root / "e-invoice.json", '{"not": "a sidecar"}')
    write(root / "2025" / "x.pdf")
    write(root / "2025.json", '{"a folder does not claim sidecars": 1}')
    items = fetch(root)
    assert set(docs(items)) == {"e-invoice.json", "2025.json", "2025/x.pdf"}
    assert docs(items)["e-invoice.json"].media_type == "application/json"


def test_sidecar_in_another_folder_does_not_apply(root: Path) -> None:
    write(root / "a.pdf")
    write(root / "sub" / "a.json", '{"number": "1"}')
    items = docs(fetch(root))
    assert items["a.pdf"].metadata.number is None
    assert "sub/a.json" in items  # nothing claims it there: a document


HOSTILE = [
    ('{"number": "../../etc/passwd"}', None),  # just a string: fine
    ('{"number": "a\\u0000b"}', "number: must not contain NUL"),
    ('{"note": "ok\\u0000"}', "note: must not contain NUL"),
    ('{"fields": {"k\\u0000": "v"}}', "fields: a key contains a NUL"),
    ('{"company": "' + "x" * 1001 + '"}', "company: too long (at most 1000 characters)"),
    ('{"tags": ["ok", 5]}', "tags[1]: Input should be a valid string"),
    ('{"tags": "travel"}', "tags: tags must be a list"),
    ('{"tags": ["a\\u001b[31m"]}', "tags[0]: must not contain control characters"),
    ('{"gross_amount": NaN}', "NaN is not a number"),
    ('{"gross_amount": Infinity}', "Infinity is not a number"),
    ('{"gross_amount": "nan"}', "gross_amount: Input should be a finite number"),
    ('{"gross_amount": 1e20}', "gross_amount: amount is too large"),
    ('{"gross_amount": "1.0000001"}', "gross_amount: at most 6 decimal places"),
    ('{"gross_amount": true}', "gross_amount:"),
    ('{"documnet_date": "2025-01-01"}', "documnet_date: unknown field"),
    ('{"document_date": "yesterday"}', "document_date: Input should be a valid date"),
    ('{"type": "bribe"}', "type: Input should be"),
    ('{"currency": "EURO"}', "currency: expected a three-letter ISO 4217 code"),
    ('{"fields": {"cost center": ["4711"]}}', 'fields["cost center"]: Input should be a valid'),
    ('{"number": "1", "number": "2"}', "number: key appears twice"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"number": ', "invalid JSON at line 1 column"),
    ("[" * 100_000, "nested too deeply"),
    ('{"n": ' + "9" * 5000 + "}", "invalid JSON"),
]


@pytest.mark.parametrize(("sidecar", "expected"), HOSTILE)
def test_malformed_sidecars_skip_only_their_document(
    root: Path, sidecar: str, expected: str | None
) -> None:
    write(root / "bad.pdf")
    write(root / "bad.json", sidecar)
    write(root / "good.pdf")
    items = fetch(root)
    assert "good.pdf" in docs(items)  # the rest import
    assert "bad.json" not in items  # a broken sidecar is still a sidecar
    if expected is None:
        assert docs(items)["bad.pdf"].metadata.number == "../../etc/passwd"
        return
    reasons = skipped(items)
    assert list(reasons) == ["bad.pdf"]
    assert reasons["bad.pdf"].startswith("sidecar bad.json: ")
    assert expected in reasons["bad.pdf"]
    assert "\x00" not in reasons["bad.pdf"] and "\x1b" not in reasons["bad.pdf"]
    assert len(reasons["bad.pdf"]) < 600


def test_binary_oversized_and_bom_sidecars(root: Path) -> None:
    write(root / "bin.pdf")
    write(root / "bin.json", b"\xff\xfe{}")
    write(root / "big.pdf")
    write(root / "big.json", b'{"note": "' + b"x" * MAX_SIDECAR_BYTES + b'"}')
    write(root / "bom.pdf")
    write(root / "bom.json", b'\xef\xbb\xbf{"number": "B1"}')
    items = fetch(root)
    reasons = skipped(items)
    assert "not UTF-8" in reasons["bin.pdf"]
    assert f"larger than {MAX_SIDECAR_BYTES} bytes" in reasons["big.pdf"]
    assert docs(items)["bom.pdf"].metadata.number == "B1"


def test_exported_sidecar_keys_are_accepted(root: Path) -> None:
    # What the folder target writes beside a file imports again.
    write(root / "x.pdf")
    exported = {
        "id": "demo/inv-1",
        "source": "demo",
        "external_id": "inv-1",
        "import_date": "2026-01-01T00:00:00Z",
        "filename": "x.pdf",
        "media_type": "application/pdf",
        "size": 14,
        "sha256": "0" * 64,
        "revision": 2,
        "number": "RE-1",
        "tags": [],
    }
    write(root / "x.pdf.json", json.dumps(exported))
    assert docs(fetch(root))["x.pdf"].metadata.number == "RE-1"


def test_symlinks_outside_the_root_are_not_followed(root: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "outside" / "secret.pdf")
    (root / "link.pdf").symlink_to(secret)
    (root / "linkdir").symlink_to(secret.parent)
    (root / "dangling.pdf").symlink_to(root / "gone.pdf")
    write(root / "real.pdf")
    (root / "alias.pdf").symlink_to(root / "real.pdf")
    (root / "loop").symlink_to(root)  # a link to a folder inside: not entered
    items = fetch(root)
    assert set(docs(items)) == {"real.pdf", "alias.pdf"}
    reasons = skipped(items)
    assert "outside the folder" in reasons["link.pdf"]
    assert "not followed" in reasons["link.pdf"]
    assert "outside the folder" in reasons["linkdir"]
    assert "broken symbolic link" in reasons["dangling.pdf"]
    assert "loop" not in items


def test_sidecar_symlink_outside_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere.json", '{"number": "1"}')
    write(root / "a.pdf")
    (root / "a.json").symlink_to(outside)
    reason = skipped(fetch(root))["a.pdf"]
    assert "sidecar a.json" in reason and "outside the folder" in reason


def test_non_utf8_file_name_is_skipped_with_a_readable_id(root: Path) -> None:
    fd = os.open(os.path.join(os.fsencode(root), b"bad\xff.pdf"), os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    write(root / "good.pdf")
    items = fetch(root)
    assert set(docs(items)) == {"good.pdf"}
    [(external_id, reason)] = skipped(items).items()
    assert external_id == "bad\ufffd.pdf"
    assert "not valid UTF-8" in reason
    external_id.encode("utf-8")  # storable


def test_fingerprint_tracks_file_and_sidecar(root: Path) -> None:
    pdf = write(root / "a.pdf")
    first = docs(fetch(root))["a.pdf"].fingerprint
    assert first == docs(fetch(root))["a.pdf"].fingerprint  # stable when unchanged
    os.utime(pdf, ns=(1, 1_000_000_000))
    touched = docs(fetch(root))["a.pdf"].fingerprint
    assert touched != first
    sidecar = write(root / "a.json", '{"number": "1"}')
    with_sidecar = docs(fetch(root))["a.pdf"].fingerprint
    assert with_sidecar != touched
    write(sidecar, '{"number": "22"}')  # one byte longer
    os.utime(sidecar, ns=(5, 5))
    assert docs(fetch(root))["a.pdf"].fingerprint != with_sidecar


def test_stable_for_leaves_fresh_files_for_later(root: Path) -> None:
    old = write(root / "old.pdf")
    past = time.time() - 3600
    os.utime(old, (past, past))
    write(root / "fresh.pdf")  # modified just now
    assert list(fetch(root, stable_for="2m")) == ["old.pdf"]
    assert set(fetch(root)) == {"old.pdf", "fresh.pdf"}  # default 0: everything
    # A fresh sidecar makes its document wait too.
    write(root / "old.json", '{"number": "1"}')
    assert list(fetch(root, stable_for=60)) == []


def test_future_mtime_imports_without_stable_for(root: Path) -> None:
    pdf = write(root / "future.pdf")
    future = time.time() + 86400
    os.utime(pdf, (future, future))
    assert list(fetch(root)) == ["future.pdf"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"stable_for": "30s"}, 30.0),
        ({"stable_for": "2m"}, 120.0),
        ({"stable_for": 5}, 5.0),
        ({"stable_for": "1h"}, 3600.0),
    ],
)
def test_stable_for_accepts_durations(options: dict[str, object], expected: float) -> None:
    assert FolderSourceOptions.model_validate({"path": "x", **options}).stable_for == expected


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"path": "x", "stable_for": "soon"},
        {"path": "x", "stable_for": -1},
        {"path": "x", "company": ""},
        {"path": "x", "recursive": "sometimes"},
        {"path": "x", "pattern": "*.pdf"},
    ],
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FolderSourceOptions.model_validate(options)


def test_path_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    opts = FolderSourceOptions.model_validate(
        {"path": "inbox"}, context={"base_dir": str(tmp_path)}
    )
    assert opts.path == tmp_path / "inbox"
    assert opts.recursive is True and opts.company is None and opts.stable_for == 0


def test_check_names_a_missing_folder(tmp_path: Path) -> None:
    source = make_source(tmp_path / "nope")
    with pytest.raises(ConnectorError, match=r"nope does not exist"):
        source.check()
    # While fetching, a missing folder is probably an unmounted share: retry.
    with pytest.raises(TransientError, match="does not exist"):
        next(source.fetch(None))


def test_check_refuses_a_file(tmp_path: Path) -> None:
    write(tmp_path / "file")
    with pytest.raises(ConnectorError, match="is not a folder"):
        make_source(tmp_path / "file").check()


def test_check_passes_on_a_folder(root: Path) -> None:
    make_source(root).check()


def test_walk_streams_instead_of_listing_everything(root: Path) -> None:
    # The first document arrives before later folders are even listed: the
    # walk is a generator holding one folder listing per level at a time.
    write(root / "a" / "1.pdf")
    write(root / "b" / "2.pdf")
    gen = make_source(root).fetch(None)
    first = next(gen)
    assert first.external_id == "a/1.pdf"
    write(root / "b" / "3.pdf")  # appears after the walk started, before b is read
    rest = [item.external_id for item in gen]
    assert rest == ["b/2.pdf", "b/3.pdf"]


def test_walking_many_folders_finds_every_file(root: Path) -> None:
    # Speed is measured by bench/builtin_connectors.py, not asserted here.
    for d in range(20):
        folder = root / f"d{d:02d}"
        folder.mkdir()
        for i in range(250):
            (folder / f"{i:04d}.pdf").write_bytes(b"x")
        (folder / "0001.json").write_text('{"number": "1"}')
    assert len(fetch(root)) == 5000


def test_inside_link_is_resolved_once_and_opened_without_following(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # alias.pdf -> sub/real.pdf inside the folder. Right after the link is
    # resolved, "sub" is swapped for a link to an outside tree holding a
    # "real.pdf" of its own: opening the resolved path again by name would
    # read the outside file. The walk opens it from the root's handle, one
    # component at a time, following no link.
    write(root / "sub" / "real.pdf", b"inside\n")
    (root / "alias.pdf").symlink_to(root / "sub" / "real.pdf")
    outside = write(tmp_path / "outside" / "real.pdf", b"SECRET\n").parent
    real_realpath = os.path.realpath
    swapped: list[str] = []

    def realpath_then_swap(path: str, **kwargs: bool) -> str:
        resolved = real_realpath(path, **kwargs)
        if str(path).endswith("alias.pdf") and not swapped:
            (root / "sub" / "real.pdf").unlink()
            (root / "sub").rmdir()
            (root / "sub").symlink_to(outside)
            swapped.append(resolved)
        return resolved

    monkeypatch.setattr(os.path, "realpath", realpath_then_swap)
    items = fetch(root, recursive=False)
    assert swapped, "the link was never resolved"
    assert not any(
        isinstance(item, SourceDocument) and item.content == b"SECRET\n" for item in items.values()
    )
    assert "changed while being read; not followed" in skipped(items)["alias.pdf"]


def test_folders_nested_too_deep_are_reported_not_entered(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invoicesync.connectors_builtin.folder import source as source_module

    monkeypatch.setattr(source_module, "MAX_DEPTH", 3)
    write(root / "a" / "b" / "ok.pdf")
    write(root / "a" / "b" / "c" / "deep.pdf")
    items = fetch(root)
    assert set(docs(items)) == {"a/b/ok.pdf"}
    assert "nested more than 3 levels deep" in skipped(items)["a/b/c"]


def test_the_walk_leaves_no_handle_open(root: Path) -> None:
    for i in range(5):
        write(root / f"d{i}" / "x.pdf")
        write(root / f"d{i}" / "x.json", '{"number": "1"}')
    before = len(os.listdir("/proc/self/fd"))
    gen = make_source(root).fetch(None)
    next(gen)
    gen.close()  # abandoned mid-walk, as on shutdown
    fetch(root)  # and a full walk
    assert len(os.listdir("/proc/self/fd")) == before
