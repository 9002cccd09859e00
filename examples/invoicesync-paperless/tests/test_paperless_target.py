"""The ``paperless`` target against the fake Paperless-ngx: mapping, idempotency, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any, cast

import pytest
from fake_paperless import FakePaperless
from invoicesync.plugins import DocumentType, ExportItem, PermanentError, TransientError
from invoicesync.plugins.testing import BreakingStream, make_export_item
from invoicesync_paperless import PaperlessOptions, PaperlessTarget
from paperless_fixtures import MakeTarget
from pydantic import ValidationError

PDF = b"%PDF-1.4 paperless test\n"


def test_document_metadata_is_mapped(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    acme = paperless.add_object("correspondents", "ACME GmbH")
    travel = paperless.add_object("tags", "Travel")
    target = make_target(correspondents={"acme": "ACME GmbH"}, tags=["invoicesync"])
    item = make_export_item(
        tmp_path,
        PDF,
        "ACME GmbH/2024/R-1.pdf",
        company="acme",
        type=DocumentType.INCOMING_INVOICE,
        tags=frozenset({"travel", "q1"}),
        document_date=date(2024, 3, 15),
    )
    ref = target.export(item).remote_ref
    doc = paperless.documents[int(ref)]
    assert doc.title == "ACME GmbH/2024/R-1"
    assert doc.original_file_name == "R-1.pdf"
    assert doc.content == PDF
    assert doc.created == "2024-03-15"
    assert doc.correspondent == acme
    assert paperless.names("document_types", doc.document_type) == ["Invoice"]
    assert paperless.names("tags", doc.tags) == ["Travel", "invoicesync", "q1"]
    assert travel in doc.tags
    # What the target created has automatic matching switched off.
    created = paperless.find_object("tags", "q1")
    assert created is not None and created["matching_algorithm"] == 0
    assert len(paperless.objects["correspondents"]) == 1


def test_unmapped_company_and_type_overrides(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    target = make_target(document_types={"misc": "Other", "receipt": None}, copy_tags=False)
    misc = make_export_item(tmp_path, PDF, "a.pdf", company="globex", type=DocumentType.MISC)
    receipt = make_export_item(
        tmp_path, PDF + b"2", "b.pdf", company=None, type=DocumentType.RECEIPT, tags={"x"}
    )
    doc_a = paperless.documents[int(target.export(misc).remote_ref)]
    doc_b = paperless.documents[int(target.export(receipt).remote_ref)]
    assert paperless.names("correspondents", doc_a.correspondent) == ["globex"]
    assert paperless.names("document_types", doc_a.document_type) == ["Other"]
    assert doc_b.correspondent is None and doc_b.document_type is None and doc_b.tags == []


def test_every_page_of_existing_tags_is_read(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    paperless.page_size = 2
    for name in ("a", "b", "c", "d", "Q1"):
        paperless.add_object("tags", name)
    target = make_target()
    item = make_export_item(tmp_path, PDF, "x.pdf", tags={"q1", "d"}, company=None)
    doc = paperless.documents[int(target.export(item).remote_ref)]
    assert paperless.names("tags", doc.tags) == ["Q1", "d"]
    assert len(paperless.objects["tags"]) == 5, "an existing tag on page 3 was created again"


def test_missing_objects_are_refused_when_creation_is_off(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    target = make_target(create_missing=False)
    item = make_export_item(tmp_path, PDF, "x.pdf", company=None, type=DocumentType.MISC)
    with pytest.raises(PermanentError, match=r"no tag named 'test' .* create_missing is false"):
        target.export(item)
    assert paperless.uploads == 0


def test_a_duplicate_found_by_the_consumer_counts_as_exported(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    # A server that ignores the checksum filter lists every document: the
    # target must confirm the checksum and not take someone else's document.
    paperless.checksum_filter = "ignore"
    target = make_target()
    first = target.export(make_export_item(tmp_path, PDF, "first.pdf")).remote_ref
    other = target.export(make_export_item(tmp_path, PDF + b"other", "other.pdf")).remote_ref
    assert other != first
    # And when the look-up misses, the consumer's "duplicate of ... (#ID)" answers.
    paperless.checksum_filter = "miss"
    again = target.export(make_export_item(tmp_path, PDF, "first.pdf"))
    assert again.remote_ref == first
    assert paperless.uploads == 3 and len(paperless.documents) == 2


def test_reexport_does_not_upload_again(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    target = make_target()
    item = make_export_item(tmp_path, PDF, "same.pdf")
    assert target.export(item).remote_ref == target.export(item).remote_ref
    assert paperless.uploads == 1


@dataclass(frozen=True)
class SecondReadBreaks(ExportItem):
    """Reads fine while the target hashes it, then breaks during the upload."""

    opened: list[int] | None = None

    def open(self) -> IO[bytes]:
        assert self.opened is not None
        self.opened.append(1)
        data = self.content_path.read_bytes()
        limit = len(data) if len(self.opened) == 1 else len(data) // 2
        return cast(IO[bytes], BreakingStream(data, limit))


def test_an_upload_that_breaks_half_way_leaves_nothing(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    content = b"%PDF-1.4\n" + bytes(range(256)) * 4096
    good = make_export_item(tmp_path, content, "big.pdf")
    broken = SecondReadBreaks(good.document, good.remote_name, good.content_path, opened=[])
    target = make_target()
    with pytest.raises(TransientError, match="simulated read failure"):
        target.export(broken)
    assert broken.opened == [1, 1], "the upload itself should have been attempted"
    assert paperless.documents == {} and paperless.uploads == 0
    ref = target.export(good).remote_ref
    assert paperless.documents[int(ref)].content == content


def test_a_document_paperless_cannot_consume_is_rejected(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    with pytest.raises(PermanentError, match=r"did not consume 'empty\.pdf'.*Unsupported mime"):
        make_target().export(make_export_item(tmp_path, b"", "empty.pdf"))


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (503, {}, TransientError, None),
        (429, {"Retry-After": "7"}, TransientError, 7.0),
        (400, {}, PermanentError, None),
        (413, {}, PermanentError, None),
    ],
)
def test_upload_answers_are_classified(
    paperless: FakePaperless,
    make_target: MakeTarget,
    tmp_path: Path,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    paperless.post_failures.append((status, {"document": ["File type not supported"]}, headers))
    with pytest.raises(error) as caught:
        make_target().export(make_export_item(tmp_path, PDF, "x.pdf"))
    assert f"HTTP {status}" in str(caught.value)
    assert "File type not supported" in str(caught.value)
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == retry_after


def test_slow_consumption_times_out_and_the_retry_finds_the_document(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    paperless.consume_after_polls = 10**9
    item = make_export_item(tmp_path, PDF, "slow.pdf")
    with pytest.raises(TransientError, match=r"still consuming 'slow\.pdf'"):
        make_target(task_timeout=0.1).export(item)
    # Paperless finishes in the background; the next attempt must not upload again.
    paperless.consume_after_polls = 0
    for task in paperless.tasks.values():
        paperless._advance(task)
    (doc_id,) = paperless.documents
    assert make_target().export(item).remote_ref == str(doc_id)
    assert paperless.uploads == 1


def test_check_accepts_the_token(make_target: MakeTarget) -> None:
    make_target().check()


def test_check_names_the_server_but_never_the_token(
    paperless: FakePaperless, make_target: MakeTarget
) -> None:
    with pytest.raises(TransientError) as caught:
        make_target(token="very-secret-token-value").check()
    message = str(caught.value)
    assert paperless.url in message and "token was refused (HTTP 401)" in message
    assert "very-secret-token-value" not in message


def test_check_on_a_closed_port_is_transient(make_target: MakeTarget) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match=f"127.0.0.1:{port}.*ConnectError"):
        make_target(url=f"http://127.0.0.1:{port}").check()


def test_long_names_become_titles_paperless_accepts(
    paperless: FakePaperless, make_target: MakeTarget, tmp_path: Path
) -> None:
    name = "Müller/" + "x" * 300 + "\x07.pdf"
    ref = make_target().export(make_export_item(tmp_path, PDF, name)).remote_ref
    doc = paperless.documents[int(ref)]
    assert len(doc.title) == 128 and doc.title.startswith("Müller/xxx")
    assert "\x07" not in doc.title + doc.original_file_name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://paperless", "token": "t"}, "expected an http:// or https:// URL"),
        ({"url": "https://u:p@paperless", "token": "t"}, "put credentials into token"),
        ({"url": "https://paperless"}, "token"),
        ({"url": "https://paperless", "token": "t", "colour": 1}, "colour"),
        ({"url": "https://paperless", "token": "t", "document_types": {"x": "y"}}, "x"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PaperlessOptions.model_validate(options)


def test_the_token_stays_out_of_reprs_and_schemas() -> None:
    options = PaperlessOptions(url="https://paperless/", token="s3cr3t-token")  # type: ignore[arg-type]
    assert options.url == "https://paperless"
    assert "s3cr3t-token" not in repr(options) + options.model_dump_json()
    assert "token" in PaperlessOptions.model_json_schema()["properties"]


def test_the_entry_point_registers_the_target() -> None:
    # Through the public interface (`invoicesync plugins --json`), not the
    # host's internals: what a user sees after `pip install`.
    invoicesync = Path(sys.executable).with_name("invoicesync")
    env = {**os.environ, "INVOICESYNC_PLUGINS": "paperless"}
    listed = subprocess.run(
        [str(invoicesync), "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    plugins = json.loads(listed.stdout)
    info = next(p for p in plugins if p["name"] == "paperless")
    assert info["targets"] == ["paperless"]
    assert info["module"] == "invoicesync_paperless"
    assert info["version"] == "0.1.0" and not info["builtin"]
    assert PaperlessTarget.type_name == "paperless"
