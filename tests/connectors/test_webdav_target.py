"""The ``webdav`` target against a real WsgiDAV server, and error classification."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.cutting_proxy import cutting_proxy
from fixtures.export_items import document, item
from fixtures.http_faults import FaultServer
from fixtures.webdav_server import WebDAVServer
from helpers import free_port
from invoicesync.connectors_builtin.webdav import WebDAVOptions, WebDAVTarget
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import (
    ConnectorContext,
    PermanentError,
    TransientError,
)
from pydantic import ValidationError

pytestmark = pytest.mark.server


def make(tmp_path: Path, **options: Any) -> WebDAVTarget:
    return WebDAVTarget(
        "dav", WebDAVOptions.model_validate(options), ConnectorContext("dav", tmp_path)
    )


@pytest.fixture
def dav(any_webdav_server: WebDAVServer) -> WebDAVServer:
    """The server under test: wsgidav, Apache mod_dav and lighttpd mod_webdav in turn."""
    return any_webdav_server


@pytest.fixture
def folder(dav: WebDAVServer) -> tuple[str, Path]:
    return dav.folder()


@pytest.fixture
def target(dav: WebDAVServer, folder: tuple[str, Path], tmp_path: Path) -> Any:
    t = make(
        tmp_path,
        url=dav.url,
        path=f"{folder[0]}/Invoices",
        username=dav.username,
        password=dav.password,
        timeout="5s",
    )
    yield t
    t.close()


def files(root: Path) -> list[str]:
    # Apache's mod_dav_fs keeps dead properties in .DAV/ folders beside the files.
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, fs in os.walk(root)
        for f in fs
        if ".DAV" not in Path(os.path.relpath(d, root)).parts
    )


def test_registered_as_builtin() -> None:
    assert load_plugins(entry_points=False).target_type("webdav") is WebDAVTarget


def test_check_creates_the_folder(target: WebDAVTarget, folder: tuple[str, Path]) -> None:
    target.check()
    assert (folder[1] / "Invoices").is_dir()
    assert files(folder[1]) == [], "the probe file must be deleted"


def test_export_creates_folders_and_records_the_etag(
    target: WebDAVTarget, folder: tuple[str, Path], dav: WebDAVServer, tmp_path: Path
) -> None:
    content = b"%PDF-1.4 hello\n"
    result = target.export(item(tmp_path, content, "acme/2024/R 1.pdf"))
    stored = folder[1] / "Invoices/acme/2024/R 1.pdf"
    assert stored.read_bytes() == content
    assert files(folder[1]) == ["Invoices/acme/2024/R 1.pdf"]
    response = httpx.request(
        "PROPFIND",
        f"{dav.url}{folder[0]}/Invoices/acme/2024/R%201.pdf",
        headers={"Depth": "0"},
        auth=(dav.username, dav.password),
    )
    assert response.status_code == 207
    assert result.remote_ref in response.text, "remote_ref must be the file's ETag"


def test_reexport_same_revision_keeps_one_file_and_etag(
    target: WebDAVTarget, folder: tuple[str, Path], tmp_path: Path
) -> None:
    content = b"%PDF-1.4 same\n"
    doc = document(content)
    first = target.export(item(tmp_path, content, "a/x.pdf", doc=doc))
    inode = (folder[1] / "Invoices/a/x.pdf").stat().st_ino
    second = target.export(item(tmp_path, content, "a/x.pdf", doc=doc))
    assert first.remote_ref == second.remote_ref
    assert (folder[1] / "Invoices/a/x.pdf").stat().st_ino == inode, "must not upload again"
    new = b"%PDF-1.4 revision 2\n"
    third = target.export(item(tmp_path, new, "a/x.pdf", doc=document(new)))
    assert third.remote_ref != first.remote_ref
    assert (folder[1] / "Invoices/a/x.pdf").read_bytes() == new
    assert files(folder[1]) == ["Invoices/a/x.pdf"]


def test_folder_deleted_behind_its_back_is_created_again(
    target: WebDAVTarget, folder: tuple[str, Path], tmp_path: Path
) -> None:
    import shutil

    target.export(item(tmp_path, b"%PDF a", "a/x.pdf"))
    shutil.rmtree(folder[1] / "Invoices/a")  # the target still believes "a" exists
    target.export(item(tmp_path, b"%PDF b", "a/y.pdf"))
    assert files(folder[1]) == ["Invoices/a/y.pdf"]


def test_a_folder_in_the_way_is_permanent(
    target: WebDAVTarget, folder: tuple[str, Path], tmp_path: Path
) -> None:
    (folder[1] / "Invoices/taken.pdf").mkdir(parents=True)
    with pytest.raises(PermanentError, match="is a folder"):
        target.export(item(tmp_path, b"%PDF", "taken.pdf"))


def test_interrupted_upload_is_retried_to_exactly_one_file(
    target: WebDAVTarget, folder: tuple[str, Path], tmp_path: Path
) -> None:
    content = os.urandom(3 * 1024 * 1024)
    doc = document(content)
    with pytest.raises(TransientError, match="could not read"):
        target.export(item(tmp_path, content, "big.pdf", doc=doc, fail_after=len(content) // 2))
    assert files(folder[1]) == [], "no partial or temporary file may remain"
    target.export(item(tmp_path, content, "big.pdf", doc=doc))
    assert files(folder[1]) == ["Invoices/big.pdf"]
    assert (folder[1] / "Invoices/big.pdf").read_bytes() == content


def test_connection_dropped_mid_upload_then_retried(
    dav: WebDAVServer, folder: tuple[str, Path], tmp_path: Path
) -> None:
    port = int(dav.url.rstrip("/").rsplit(":", 1)[1])
    content = os.urandom(2 * 1024 * 1024)
    doc = document(content)
    with cutting_proxy(port) as proxy:
        t = make(
            tmp_path,
            url=f"http://127.0.0.1:{proxy.port}/",
            path=folder[0],
            username=dav.username,
            password=dav.password,
            timeout=10,
        )
        proxy.arm(cut_after=len(content) // 2)
        with pytest.raises(TransientError):
            t.export(item(tmp_path, content, "dropped.pdf", doc=doc))
        assert proxy.cuts == 1, "the proxy must really have cut the upload"
        dav.settled(folder[1])
        assert files(folder[1]) == [], "the cut upload must leave no file, temporary or final"
        t.export(item(tmp_path, content, "dropped.pdf", doc=doc))
        t.close()
    assert files(folder[1]) == ["dropped.pdf"]
    assert (folder[1] / "dropped.pdf").read_bytes() == content


def test_shutdown_abandons_the_upload(
    target: WebDAVTarget, folder: tuple[str, Path], tmp_path: Path
) -> None:
    target.context.stop.set()
    with pytest.raises(TransientError, match="stopping"):
        target.export(item(tmp_path, b"%PDF-1.4 stop\n", "stop.pdf"))
    assert files(folder[1]) == []


def test_wrong_password_is_permanent_and_secret_free(
    dav: WebDAVServer, tmp_path: Path
) -> None:
    secret = "not-the-password-123"
    t = make(tmp_path, url=dav.url, username="alice", password=secret, timeout=5)
    with pytest.raises(PermanentError, match="401") as caught:
        t.check()
    assert secret not in str(caught.value)
    assert "username and password" in str(caught.value)


@pytest.mark.parametrize(
    "name", ["../escape.pdf", "/abs.pdf", "a/../../b.pdf", "nul\x00.pdf", "x" * 300, "a\\b.pdf"]
)
def test_hostile_names_are_refused(
    target: WebDAVTarget, name: str, tmp_path: Path, dav: WebDAVServer
) -> None:
    base = Path(os.path.commonpath([dav.root, tmp_path]))  # the session's temporary folder
    mine = tmp_path.relative_to(base).parts[0]
    before = set(files(base))
    with pytest.raises(PermanentError, match="refusing remote name"):
        target.export(item(tmp_path, b"x", name))
    created = {f for f in set(files(base)) - before if Path(f).parts[0] != mine}
    assert created == set(), f"export created files: {sorted(created)}"


def test_percent_and_hash_stay_literal(
    target: WebDAVTarget, folder: tuple[str, Path], tmp_path: Path
) -> None:
    target.export(item(tmp_path, b"%PDF", "Müller & Söhne/Nr #1 %2e%2e (100%).pdf"))
    assert files(folder[1]) == ["Invoices/Müller & Söhne/Nr #1 %2e%2e (100%).pdf"]


def test_sanitize_component(tmp_path: Path) -> None:
    t = make(tmp_path, url="https://cloud.example.com/remote.php/dav/files/u/")
    assert t.sanitize_component('a\\b:c*d?e"f<g>h|i.pdf') == "a_b_c_d_e_f_g_h_i.pdf"
    assert t.sanitize_component("Rechnung. ") == "Rechnung__"
    assert t.sanitize_component("upload.part") == "upload.part_"
    assert t.sanitize_component("Müller #1.pdf") == "Müller #1.pdf"
    for raw in ("a:b", "x. ", "y.part"):
        once = t.sanitize_component(raw)
        assert t.sanitize_component(once) == once


# -- error classification against a scripted HTTP server ----------------------


def fault_target(server: FaultServer, tmp_path: Path) -> WebDAVTarget:
    return make(tmp_path, url=server.url, username="u", password="p", timeout=2)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (503, {"Retry-After": "7"}, 7.0),
        (429, {"Retry-After": "120"}, 120.0),
        (500, {}, None),
        (502, {}, None),
        (423, {}, None),
    ],
)
def test_server_errors_are_transient(
    fault_server: FaultServer,
    tmp_path: Path,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    fault_server.set(status, headers)
    with pytest.raises(TransientError, match=f"HTTP {status}") as caught:
        fault_target(fault_server, tmp_path).export(item(tmp_path, b"x", "a.pdf"))
    assert caught.value.retry_after == retry_after


def test_retry_after_http_date(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.set(503, {"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"})
    with pytest.raises(TransientError) as caught:
        fault_target(fault_server, tmp_path).check()
    assert caught.value.retry_after is not None and caught.value.retry_after > 86400


SABRE_403 = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:" '
    b'xmlns:s="http://sabredav.org/ns"><s:exception>Sabre\\DAV\\Exception\\Forbidden'
    b"</s:exception><s:message>Filename contains at least one invalid character</s:message>"
    b"</d:error>"
)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (403, SABRE_403, "Filename contains at least one invalid character"),
        (413, b"", "Request Entity Too Large"),
        (415, b"", "Unsupported Media Type"),
        (507, b"", "Insufficient Storage"),
        (404, b"", "Not Found"),
    ],
)
def test_client_errors_are_permanent_with_reason(
    fault_server: FaultServer, tmp_path: Path, status: int, body: bytes, reason: str
) -> None:
    headers = {"Content-Type": "application/xml; charset=utf-8"} if body else {}
    fault_server.set(status, headers, body)
    with pytest.raises(PermanentError) as caught:
        fault_target(fault_server, tmp_path).export(item(tmp_path, b"x", "a.pdf"))
    assert f"HTTP {status}" in str(caught.value)
    assert reason in str(caught.value)


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    t = make(tmp_path, url=f"http://127.0.0.1:{free_port()}/dav/", timeout=2)
    with pytest.raises(TransientError):
        t.check()


def test_timeout_is_transient(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.hang.set()
    t = make(tmp_path, url=fault_server.url, timeout=0.5)
    with pytest.raises(TransientError, match="timed out"):
        t.export(item(tmp_path, b"x", "a.pdf"))


# -- options ----------------------------------------------------------------------


def test_options_validation() -> None:
    with pytest.raises(ValidationError, match="not in the URL"):
        WebDAVOptions(url="https://bob:secret@cloud.example.com/dav/")
    with pytest.raises(ValidationError, match="http"):
        WebDAVOptions(url="ftp://cloud.example.com/")
    with pytest.raises(ValidationError, match=r"'\.\.'"):
        WebDAVOptions(url="https://h/", path="a/../b")
    with pytest.raises(ValidationError, match="username is missing"):
        WebDAVOptions.model_validate({"url": "https://h/", "password": "x"})
    with pytest.raises(ValidationError, match="duration"):
        WebDAVOptions.model_validate({"url": "https://h/", "timeout": "soon"})
    o = WebDAVOptions.model_validate(
        {"url": "https://h/dav", "path": "/a//b/", "username": "u", "password": "hunter2"}
    )
    assert o.url == "https://h/dav/" and o.path == "a/b"
    assert "hunter2" not in repr(o) and "hunter2" not in str(o.model_dump())
