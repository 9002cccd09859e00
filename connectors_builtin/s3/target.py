"""The ``s3`` export target: AWS S3 and S3-compatible stores (MinIO, Wasabi, Hetzner...).

A single S3 PUT is atomic (the object appears complete or not at all), so no
temporary key is needed. The document's SHA-256 travels as user metadata
(``x-amz-meta-invoicesync-sha256``); a re-export of the same revision finds it
with a HEAD and does not upload again, so a versioned bucket gains no
duplicate version and the remote reference stays the same.

An account exports on 16 threads by default (``default_concurrency``): an
object store answers each request after a network round trip and serves many
at once. The threads share one boto3 client (thread-safe) whose connection
pool holds a keep-alive connection for each of them.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal, cast
from urllib.parse import quote, urlencode, urlsplit

from invoicesync.plugins import (
    ConnectorContext,
    ConnectorOptions,
    Document,
    ExportItem,
    ExportResult,
    PermanentError,
    RelativePath,
    Target,
    TransientError,
    split_remote_name,
)
from pydantic import SecretStr, field_validator, model_validator

from .._remote import (
    ContentReadError,
    Duration,
    import_optional,
    parse_retry_after,
    replace_chars,
    short_reason,
    stream_size,
)

if TYPE_CHECKING:
    from botocore.client import BaseClient

__all__ = ["S3Options", "S3Target"]

#: Characters AWS recommends avoiding in object keys (besides non-printables).
AVOID_CHARS = '\\{}^%`[]"<>~#|'
SHA_KEY = "invoicesync-sha256"
_CHUNK = 256 * 1024
_SESSION: Any = None
_SESSION_LOCK = threading.Lock()
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
MAX_KEY_BYTES = 1024
# S3 error codes worth retrying although some come with a 4xx status.
_TRANSIENT_CODES = {
    "RequestTimeout",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
}
# What a tag value may hold on AWS; the rest is replaced.
_TAG_OK = set("+-=._:/@ ")


class S3Options(ConnectorOptions):
    """``options:`` of an ``s3`` export."""

    bucket: str
    prefix: str = ""
    """Key prefix ("folder") inside the bucket."""
    endpoint_url: str | None = None
    """For S3-compatible services, e.g. ``https://fsn1.your-objectstorage.com``; empty: AWS."""
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    """Both empty: boto3's usual chain (environment, ~/.aws, instance role)."""
    sse: Literal["none", "AES256", "aws:kms"] = "none"
    kms_key_id: str | None = None
    metadata: Literal["headers", "tags", "none"] = "headers"
    """Document fields as ``x-amz-meta-*`` headers, as object tags, or not at all."""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    storage_class: str | None = None
    verify_tls: bool | RelativePath = True
    timeout: Duration = 30.0

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str) -> str:
        value = value.strip()
        if not 3 <= len(value) <= 63 or "/" in value or not value.isascii():
            raise ValueError("expected a bucket name (3-63 characters, no '/')")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        parts = [p for p in value.strip().split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError("must not contain '.' or '..' components")
        return "".join(f"{p}/" for p in parts)

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("put the keys in access_key_id/secret_access_key, not in the URL")
        return value.strip()

    @field_validator("verify_tls")
    @classmethod
    def _check_ca(cls, value: bool | Path) -> bool | Path:
        if isinstance(value, Path) and not value.is_file():
            raise ValueError(f"CA bundle {value} does not exist")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> S3Options:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("kms_key_id needs sse: aws:kms")
        return self


class S3Target(Target[S3Options]):
    """Exports documents as objects in an S3 bucket."""

    type_name = "s3"
    Options = S3Options
    description = "S3 bucket (AWS, MinIO, Wasabi, Hetzner and other S3-compatible stores)"
    requires: ClassVar[dict[str, str]] = {"boto3": "invoicesync[s3]"}
    default_concurrency = 16

    def __init__(self, id: str, options: S3Options, context: ConnectorContext) -> None:
        super().__init__(id, options, context)
        self._client: BaseClient | None = None

    def sanitize_component(self, component: str) -> str:
        """Replace characters AWS recommends avoiding in keys (``\\ { } ^ % ` [ ] " < > ~ # |``)."""
        return replace_chars(component, AVOID_CHARS)

    def check(self) -> None:
        """Write and delete a probe object under the prefix (proves write access)."""
        key = f"{self.options.prefix}.invoicesync-check-{uuid.uuid4().hex[:12]}"
        self._call("PUT", key, "put_object", Key=key, Body=b"invoicesync write check\n")
        # A write-only key may not delete; writing was what we had to prove.
        with contextlib.suppress(PermanentError):
            self._call("DELETE", key, "delete_object", Key=key)

    def export(self, item: ExportItem) -> ExportResult:
        parts = split_remote_name(item.remote_name)
        key = self.options.prefix + "/".join(parts)
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise PermanentError(f"S3 key for {item.remote_name!r} exceeds {MAX_KEY_BYTES} bytes")
        head = self._head(key)
        if head is not None and head.get("Metadata", {}).get(SHA_KEY) == item.document.sha256:
            # Same revision already stored (a redelivery): do not add a version.
            return ExportResult(self._ref(key, head.get("VersionId")))
        extra = self._put_args(item.document)
        with item.open() as raw:
            try:
                stream = _seekable(raw, self.context.stop)
            except ContentReadError as exc:
                raise TransientError(f"could not read the document's content: {exc}") from None
            response = self._call(
                "PUT",
                key,
                "put_object",
                Key=key,
                Body=_GuardedReader(stream, self.context.stop),
                ContentLength=stream_size(stream, item.document.size),
                **extra,
            )
        return ExportResult(self._ref(key, response.get("VersionId")))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- internals ----------------------------------------------------------------

    @property
    def client(self) -> BaseClient:
        client = self._client
        if client is not None:
            return client
        with _SESSION_LOCK:
            # Checked again under the lock: the export threads of a run all
            # start at once and must share one client (one connection pool).
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> BaseClient:
        """A client of the shared session; called with ``_SESSION_LOCK`` held."""
        boto3 = import_optional("boto3", "s3")
        from botocore.config import Config

        o = self.options
        config = Config(
            connect_timeout=o.timeout,
            read_timeout=o.timeout,
            # The daemon retries with back-off; retrying here too would
            # multiply the waits and hide the server's Retry-After.
            retries={"mode": "standard", "total_max_attempts": 1},
            s3={"addressing_style": o.addressing_style},
            # boto3 >= 1.36 adds CRC checksum trailers that many
            # S3-compatible stores reject; only send what S3 requires.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="invoicesync",
            # A keep-alive connection for each export thread (an account
            # has at most 32); botocore's default of 10 would make the
            # threads beyond it open and drop connections per request.
            max_pool_connections=32,
        )
        verify: bool | str = str(o.verify_tls) if isinstance(o.verify_tls, Path) else o.verify_tls
        secret = o.secret_access_key.get_secret_value() if o.secret_access_key else None
        # One botocore session for all S3 targets: loading the service model
        # costs ~0.3 s per session. Creating clients is not thread-safe
        # (hence the lock the caller holds).
        global _SESSION
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client(
            "s3",
            endpoint_url=o.endpoint_url,
            region_name=o.region or "us-east-1",
            aws_access_key_id=o.access_key_id,
            aws_secret_access_key=secret,
            verify=verify,
            config=config,
        )

    def _ref(self, key: str, version: str | None) -> str:
        ref = f"s3://{self.options.bucket}/{key}"
        return f"{ref}?versionId={version}" if version and version != "null" else ref

    def _put_args(self, doc: Document) -> dict[str, Any]:
        o = self.options
        meta: dict[str, str] = {SHA_KEY: doc.sha256}
        args: dict[str, Any] = {"ContentType": doc.media_type or "application/octet-stream"}
        fields = _document_fields(doc)
        if o.metadata == "headers":
            # Header values must be ASCII; percent-encode the rest (UTF-8).
            meta.update({f"invoicesync-{k}": quote(v, safe=" /:@,.-_+=") for k, v in fields})
        elif o.metadata == "tags":
            # S3 allows 10 tags per object, keys <= 128 and values <= 256 characters.
            tags = [(f"invoicesync:{k}", _tag_value(v)) for k, v in fields][:10]
            args["Tagging"] = urlencode(tags)
        args["Metadata"] = meta
        if o.sse != "none":
            args["ServerSideEncryption"] = o.sse
            if o.kms_key_id:
                args["SSEKMSKeyId"] = o.kms_key_id
        if o.storage_class:
            args["StorageClass"] = o.storage_class
        return args

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._call("HEAD", key, "head_object", Key=key)
        except _Refused as exc:
            # 404: not there yet. 403: a write-only key may not read objects.
            # Any other refusal: a HEAD answer has no body to say why, so let
            # the PUT that follows report the server's reason.
            del exc
            return None

    def _call(self, what: str, key: str, method: str, **kwargs: Any) -> Any:
        """Call one S3 operation, turning every failure into Transient/PermanentError."""
        from botocore import exceptions as bx

        where = f"s3://{self.options.bucket}/{key}"
        try:
            return getattr(self.client, method)(Bucket=self.options.bucket, **kwargs)
        except ContentReadError as exc:
            raise TransientError(f"could not read the document's content: {exc}") from None
        except bx.ClientError as exc:
            raise _classify(exc, what, where) from None
        except (bx.ConnectTimeoutError, bx.ReadTimeoutError):
            raise TransientError(
                f"S3 {what} {where} timed out after {self.options.timeout:g}s"
            ) from None
        except bx.SSLError as exc:
            text = short_reason(str(exc))
            error = PermanentError if "CERTIFICATE_VERIFY_FAILED" in text else TransientError
            raise error(f"S3 {what} {where}: TLS error: {text}") from None
        except (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.HTTPClientError) as exc:
            raise TransientError(f"S3 {what} {where} failed: {short_reason(str(exc))}") from None
        except bx.NoCredentialsError:
            raise PermanentError(
                "S3: no credentials; set access_key_id and secret_access_key"
            ) from None
        except (bx.ParamValidationError, bx.BotoCoreError) as exc:
            raise PermanentError(f"S3 {what} {where} failed: {short_reason(str(exc))}") from None


def _classify(exc: Any, what: str, where: str) -> TransientError | PermanentError:
    response = exc.response or {}
    meta = response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    error = response.get("Error", {})
    code = str(error.get("Code") or status)
    text = short_reason(str(error.get("Message") or ""))
    message = f"S3 {what} {where} refused: {code} (HTTP {status})" + (f": {text}" if text else "")
    headers = {k.lower(): v for k, v in (meta.get("HTTPHeaders") or {}).items()}
    if code in _TRANSIENT_CODES or status in (408, 429) or (status >= 500 and status != 501):
        return TransientError(message, retry_after=parse_retry_after(headers.get("retry-after")))
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        message += " (check access_key_id and secret_access_key)"
    return _Refused(message, status)


class _Refused(PermanentError):
    """A PermanentError that remembers the HTTP status (HEAD tells 404 from 403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _document_fields(doc: Document) -> list[tuple[str, str]]:
    fields = [
        ("id", doc.id),
        ("type", doc.type.value),
        ("company", doc.company),
        ("number", doc.number),
        ("document-date", doc.document_date.isoformat() if doc.document_date else None),
        ("gross-amount", str(doc.gross_amount) if doc.gross_amount is not None else None),
        ("currency", doc.currency),
        ("payment-status", doc.payment_status.value),
        ("tags", ",".join(sorted(doc.tags)) if doc.tags else None),
    ]
    return [(k, v) for k, v in fields if v]


def _tag_value(value: str) -> str:
    clean = "".join(c if c.isalnum() or c in _TAG_OK else "_" for c in value)
    return clean[:256]


class _GuardedReader:
    """A seekable file-like wrapper marking read failures of the local content as such.

    Without it an OSError from a dying disk would look like a socket error to
    urllib3 and be reported as a network problem (or retried against a
    half-consumed stream).
    """

    def __init__(self, stream: IO[bytes], stop: threading.Event | None = None) -> None:
        self._stream = stream
        self._stop = stop

    def read(self, size: int = -1) -> bytes:
        if self._stop is not None and self._stop.is_set():
            # Shutting down: abandon the PUT; S3 stores nothing of it.
            raise ContentReadError("invoicesync is stopping")
        try:
            return self._stream.read(size)
        except Exception as exc:
            raise ContentReadError(short_reason(str(exc)) or type(exc).__name__) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def seekable(self) -> bool:
        return True


def _seekable(stream: IO[bytes], stop: threading.Event) -> IO[bytes]:
    """The stream itself if seekable, else a spooled copy of it.

    botocore must rewind the body: over plain HTTP it hashes the payload for
    the signature before sending it.
    """
    try:
        if stream.seekable():
            return stream
    except (OSError, ValueError):
        pass
    # Not a context manager: it must outlive this function; it holds no
    # resource beyond memory or an unlinked temporary file.
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    reader = _GuardedReader(stream, stop)
    while chunk := reader.read(_CHUNK):
        spool.write(chunk)
    spool.seek(0)
    return cast(IO[bytes], spool)
