"""The ``s3`` target against moto's standalone server (real HTTP), and error classification."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fixtures.cutting_proxy import cutting_proxy
from fixtures.export_items import document, item
from fixtures.http_faults import FaultServer
from fixtures.s3_server import S3Server
from helpers import free_port
from invoicesync.connectors_builtin.s3 import S3Options, S3Target
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import ConnectorContext, PermanentError, TransientError
from pydantic import ValidationError

pytestmark = pytest.mark.server

SECRET = "testing-secret"


def make(tmp_path: Path, **options: Any) -> S3Target:
    options.setdefault("access_key_id", "testing")
    options.setdefault("secret_access_key", SECRET)
    options.setdefault("timeout", 5)
    return S3Target("s3", S3Options.model_validate(options), ConnectorContext("s3", tmp_path))


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def target(s3_server: S3Server, bucket: str, tmp_path: Path) -> Any:
    t = make(tmp_path, endpoint_url=s3_server.endpoint_url, bucket=bucket, prefix="/books/2024/")
    yield t
    t.close()


def keys(s3_server: S3Server, bucket: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_registered_as_builtin() -> None:
    assert load_plugins(entry_points=False).target_type("s3") is S3Target


def test_check_writes_and_removes_a_probe(
    target: S3Target, s3_server: S3Server, bucket: str
) -> None:
    target.check()
    assert keys(s3_server, bucket) == []


def test_export_with_header_metadata(
    target: S3Target, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    content = b"%PDF-1.4 s3\n"
    doc = document(content, company="Müller & Söhne", number="R/1")
    result = target.export(item(tmp_path, content, "acme/R 1.pdf", doc=doc))
    key = "books/2024/acme/R 1.pdf"
    assert result.remote_ref == f"s3://{bucket}/{key}"
    client = s3_server.client()
    obj = client.get_object(Bucket=bucket, Key=key)
    assert obj["Body"].read() == content
    assert obj["ContentType"] == "application/pdf"
    meta = obj["Metadata"]
    assert meta["invoicesync-sha256"] == doc.sha256
    assert unquote(meta["invoicesync-company"]) == "Müller & Söhne"
    assert meta["invoicesync-number"] == "R/1"
    assert meta["invoicesync-tags"] == "Q1,travel"
    assert keys(s3_server, bucket) == [key]


def test_export_with_tags_and_sse(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    t = make(
        tmp_path, endpoint_url=s3_server.endpoint_url, bucket=bucket, metadata="tags", sse="AES256"
    )
    content = b"%PDF-1.4 tagged\n"
    t.export(item(tmp_path, content, "x.pdf", doc=document(content, number="A#1")))
    client = s3_server.client()
    tags = {
        tag["Key"]: tag["Value"]
        for tag in client.get_object_tagging(Bucket=bucket, Key="x.pdf")["TagSet"]
    }
    assert tags["invoicesync:number"] == "A_1"
    assert tags["invoicesync:type"] == "incoming_invoice"
    head = client.head_object(Bucket=bucket, Key="x.pdf")
    assert head["ServerSideEncryption"] == "AES256"
    assert set(head["Metadata"]) == {"invoicesync-sha256"}


def test_versioned_bucket_reexport_adds_no_version(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket(versioned=True)
    t = make(tmp_path, endpoint_url=s3_server.endpoint_url, bucket=bucket)
    content = b"%PDF-1.4 v1\n"
    doc = document(content)
    first = t.export(item(tmp_path, content, "v.pdf", doc=doc))
    assert "?versionId=" in first.remote_ref
    again = t.export(item(tmp_path, content, "v.pdf", doc=doc))
    assert again.remote_ref == first.remote_ref
    client = s3_server.client()
    assert len(client.list_object_versions(Bucket=bucket)["Versions"]) == 1
    new = b"%PDF-1.4 v2\n"
    third = t.export(item(tmp_path, new, "v.pdf", doc=document(new)))
    assert third.remote_ref != first.remote_ref
    assert len(client.list_object_versions(Bucket=bucket)["Versions"]) == 2
    assert client.get_object(Bucket=bucket, Key="v.pdf")["Body"].read() == new


def test_interrupted_upload_is_retried_to_exactly_one_object(
    target: S3Target, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    content = os.urandom(3 * 1024 * 1024)
    doc = document(content)
    with pytest.raises(TransientError, match="could not read"):
        target.export(item(tmp_path, content, "big.pdf", doc=doc, fail_after=len(content) // 2))
    assert keys(s3_server, bucket) == []
    target.export(item(tmp_path, content, "big.pdf", doc=doc))
    assert keys(s3_server, bucket) == ["books/2024/big.pdf"]
    body = s3_server.client().get_object(Bucket=bucket, Key="books/2024/big.pdf")["Body"]
    assert body.read() == content


def test_connection_dropped_mid_upload_then_retried(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    port = int(s3_server.endpoint_url.rsplit(":", 1)[1])
    content = os.urandom(2 * 1024 * 1024)
    doc = document(content)
    with cutting_proxy(port) as proxy:
        t = make(tmp_path, endpoint_url=f"http://127.0.0.1:{proxy.port}", bucket=bucket)
        proxy.arm(cut_after=len(content) // 2)
        with pytest.raises(TransientError):
            t.export(item(tmp_path, content, "dropped.pdf", doc=doc))
        assert proxy.cuts == 1, "the proxy must really have cut the upload"
        assert keys(s3_server, bucket) == []
        t.export(item(tmp_path, content, "dropped.pdf", doc=doc))
        t.close()
    assert keys(s3_server, bucket) == ["dropped.pdf"]
    assert s3_server.client().get_object(Bucket=bucket, Key="dropped.pdf")["Body"].read() == content


def test_shutdown_abandons_the_upload(
    target: S3Target, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    target.context.stop.set()
    with pytest.raises(TransientError, match="stopping"):
        target.export(item(tmp_path, b"%PDF-1.4 stop\n", "stop.pdf"))
    assert keys(s3_server, bucket) == []


def test_boto3_missing_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "boto3" else real(name, *a)
    )
    # Declared in S3Target.requires; the loader turns it into a configuration
    # error at the account's `type:` line (tests/e2e/test_cli_missing_extra.py).
    from invoicesync.daemon.extras import install_hint

    assert install_hint(S3Target, "target") == (
        "the s3 target needs the Python package boto3, which is not installed: "
        "pip install 'invoicesync[s3]'"
    )


def test_missing_bucket_is_permanent(s3_server: S3Server, tmp_path: Path) -> None:
    t = make(tmp_path, endpoint_url=s3_server.endpoint_url, bucket="no-such-bucket-here")
    with pytest.raises(PermanentError, match="NoSuchBucket") as caught:
        t.check()
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("name", ["../x.pdf", "/abs.pdf", "a/./b.pdf", "c\x1b.pdf", "a\\b.pdf"])
def test_hostile_names_are_refused(target: S3Target, name: str, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="refusing remote name"):
        target.export(item(tmp_path, b"x", name))


def test_sanitize_component(tmp_path: Path) -> None:
    t = make(tmp_path, bucket="bucket")
    assert t.sanitize_component('a{b}c^d%e`f[g]h"i<j>k~l#m|n\\o.pdf') == (
        "a_b_c_d_e_f_g_h_i_j_k_l_m_n_o.pdf"
    )
    assert t.sanitize_component("Müller & Söhne (1).pdf") == "Müller & Söhne (1).pdf"


# -- error classification against a scripted HTTP server --------------------------


def s3_error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>1</RequestId></Error>"
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "headers", "retry_after"),
    [
        (503, "SlowDown", {"Retry-After": "9"}, 9.0),
        (500, "InternalError", {}, None),
        (429, "TooManyRequests", {"Retry-After": "30"}, 30.0),
        (400, "RequestTimeout", {}, None),
    ],
)
def test_server_errors_are_transient(
    fault_server: FaultServer,
    tmp_path: Path,
    status: int,
    code: str,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    fault_server.set(status, {"Content-Type": "application/xml", **headers}, s3_error(code, "x"))
    t = make(tmp_path, endpoint_url=fault_server.url, bucket="bucket", addressing_style="path")
    with pytest.raises(TransientError, match=code) as caught:
        t.check()
    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, "AccessDenied", "Access Denied"),
        (400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"),
        (403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist"),
    ],
)
def test_refusals_are_permanent_with_reason(
    fault_server: FaultServer, tmp_path: Path, status: int, code: str, message: str
) -> None:
    fault_server.set(status, {"Content-Type": "application/xml"}, s3_error(code, message))
    t = make(tmp_path, endpoint_url=fault_server.url, bucket="bucket", addressing_style="path")
    with pytest.raises(PermanentError) as caught:
        t.check()
    assert code in str(caught.value) and message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_export_reports_the_put_reason_not_the_head(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.set(403, {"Content-Type": "application/xml"}, s3_error("AccessDenied", "No"))
    t = make(tmp_path, endpoint_url=fault_server.url, bucket="bucket", addressing_style="path")
    with pytest.raises(PermanentError, match=r"PUT .*AccessDenied"):
        t.export(item(tmp_path, b"x", "a.pdf"))
    assert [r.split()[0] for r in fault_server.requests] == ["HEAD", "PUT"]


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    t = make(tmp_path, endpoint_url=f"http://127.0.0.1:{free_port()}", bucket="bucket")
    with pytest.raises(TransientError):
        t.export(item(tmp_path, b"x", "a.pdf"))


def test_timeout_is_transient(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.hang.set()
    t = make(tmp_path, endpoint_url=fault_server.url, bucket="bucket", timeout=0.5)
    with pytest.raises(TransientError, match="timed out"):
        t.check()


def test_options_validation() -> None:
    with pytest.raises(ValidationError, match="kms_key_id needs sse"):
        S3Options(bucket="bucket", kms_key_id="k")
    with pytest.raises(ValidationError, match="both access_key_id"):
        S3Options(bucket="bucket", access_key_id="a")
    with pytest.raises(ValidationError, match="bucket name"):
        S3Options(bucket="a/b")
    with pytest.raises(ValidationError, match="not in the URL"):
        S3Options(bucket="bucket", endpoint_url="https://k:s@minio.local")
    o = S3Options.model_validate(
        {"bucket": "bucket", "prefix": "/a//b", "access_key_id": "a", "secret_access_key": "s3cr3t"}
    )
    assert o.prefix == "a/b/"
    assert "s3cr3t" not in repr(o)
