"""The ``paperless`` export target: uploads documents to Paperless-ngx.

It speaks the REST API that Paperless-ngx documents in "REST API"
(https://docs.paperless-ngx.com/api/):

- every request carries ``Authorization: Token <token>``;
- ``POST /api/documents/post_document/`` takes the file (form field
  ``document``) with ``title``, ``created``, ``correspondent``,
  ``document_type`` and ``tags`` (ids, repeated) and answers with the UUID of
  a consumption task, which ``GET /api/tasks/?task_id=UUID`` reports on;
- correspondents, document types and tags are listed (paginated) and created
  under ``/api/correspondents/``, ``/api/document_types/`` and ``/api/tags/``.

How invoicesync's document maps onto Paperless-ngx:

- title: the remote name (the account's ``filename`` template) without its
  extension; the uploaded file name is the name's last component;
- created: the document date;
- correspondent: the document's company, renamed through ``correspondents``;
- document type: the document's type, named through ``document_types``;
- tags: the document's own tags (``copy_tags``) plus ``tags``.
Missing correspondents, document types and tags are created
(``create_missing``) with matching disabled, so that Paperless's automatic
matching never assigns them to other documents.

Idempotency: Paperless-ngx refuses a file whose MD5 checksum it already
holds. Before uploading, the target looks the checksum up
(``/api/documents/?checksum__iexact=``, confirmed through the document's
``/metadata/``); a duplicate reported by the consumer counts as success too.
Either way the remote reference is the existing document's id, so exporting
the same revision twice leaves one document. Paperless-ngx cannot replace a
document's file through this API, and invoicesync never deletes remotely, so
a changed revision becomes a new document.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from invoicesync.plugins import (
    ConnectorContext,
    ConnectorOptions,
    DocumentType,
    ExportItem,
    ExportResult,
    PermanentError,
    Target,
    TransientError,
)
from pydantic import Field, SecretStr, field_validator

__all__ = ["DEFAULT_DOCUMENT_TYPES", "PaperlessOptions", "PaperlessTarget"]

#: Paperless-ngx document type names used unless ``document_types`` says otherwise.
DEFAULT_DOCUMENT_TYPES: dict[DocumentType, str | None] = {
    DocumentType.INCOMING_INVOICE: "Invoice",
    DocumentType.SALES_INVOICE: "Sales invoice",
    DocumentType.CREDIT_NOTE: "Credit note",
    DocumentType.RECEIPT: "Receipt",
    DocumentType.PAYMENT_RECEIPT: "Payment receipt",
    DocumentType.STATEMENT: "Statement",
    DocumentType.MISC: None,
}

TITLE_MAX = 128  # Paperless-ngx's Document.title is a CharField(max_length=128)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DUPLICATE_ID = re.compile(r"duplicate of .*\(#(\d+)\)", re.DOTALL)
_OBJECT_KINDS = {
    "correspondents": "correspondent",
    "document_types": "document type",
    "tags": "tag",
}
_CHUNK = 1024 * 1024


class PaperlessOptions(ConnectorOptions):
    """Options of the ``paperless`` target (``exports[].options``)."""

    url: str = Field(description="Base URL of Paperless-ngx, e.g. https://paperless.example.com")
    token: SecretStr = Field(
        description="API token (write keyring:NAME, env:VAR or credential:NAME, never the token)"
    )
    correspondents: dict[str, str] = Field(
        default_factory=dict,
        description="Company id -> correspondent name; unlisted companies use their id",
    )
    document_types: dict[DocumentType, str | None] = Field(
        default_factory=dict,
        description="Document type -> Paperless document type name (null: none)",
    )
    tags: list[str] = Field(default_factory=list, description="Tags added to every document")
    copy_tags: bool = Field(True, description="Also add the document's own tags")
    create_missing: bool = Field(
        True, description="Create missing correspondents, document types and tags"
    )
    timeout: float = Field(30.0, gt=0, description="Seconds per HTTP request")
    task_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for Paperless to consume an upload"
    )
    poll_interval: float = Field(1.0, gt=0, description="Seconds between task status polls")
    verify_tls: bool = Field(True, description="Check the server's TLS certificate")

    @field_validator("url")
    @classmethod
    def http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL such as https://paperless.local")
        if parts.username or parts.password:
            raise ValueError("put credentials into token, not into the URL")
        return value.rstrip("/")


class PaperlessTarget(Target[PaperlessOptions]):
    """Uploads each document to Paperless-ngx as one document."""

    type_name = "paperless"
    Options = PaperlessOptions
    description = "Paperless-ngx document management system (REST API)"

    def __init__(self, id: str, options: PaperlessOptions, context: ConnectorContext) -> None:
        super().__init__(id, options, context)
        self._client: httpx.Client | None = None
        # name (case-folded) -> id, per object kind; filled on first use.
        self._ids: dict[str, dict[str, int]] = {}
        # The engine exports on several threads (an account's ``concurrency``):
        # one client for all, and one thread at a time creating objects, so
        # that two documents with a new tag do not both try to create it.
        self._lock = threading.Lock()
        self._objects_lock = threading.Lock()

    # -- connection ---------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            return self._client_locked()

    def _client_locked(self) -> httpx.Client:
        if self._client is None:
            # Loading the CA bundle costs a noticeable fraction of a second:
            # only an https URL needs it.
            tls = self.options.url.startswith("https:")
            self._client = httpx.Client(
                base_url=self.options.url,
                headers={
                    "Authorization": f"Token {self.options.token.get_secret_value()}",
                    "Accept": "application/json",
                },
                timeout=self.options.timeout,
                verify=self.options.verify_tls if tls else False,
                follow_redirects=False,
            )
        return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; every failure becomes a classified ConnectorError."""
        where = f"Paperless-ngx at {self.options.url}: {method} {path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{where} timed out after {self.options.timeout}s") from exc
        except httpx.HTTPError as exc:
            raise TransientError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status < 300:
            return response
        detail = response.text[:300].strip()
        if status in (401, 403):
            # Not the document's fault: retry later rather than reject it.
            raise TransientError(
                f"{where}: the API token was refused (HTTP {status}); "
                "check options.token and the user's permissions"
            )
        if status == 429 or status >= 500:
            raise TransientError(
                f"{where}: HTTP {status} {detail}", retry_after=_retry_after(response)
            )
        raise PermanentError(f"{where}: HTTP {status} {detail}")

    def check(self) -> None:
        """Call the API root with the token: proves URL, TLS and token."""
        response = self._request("GET", "/api/")
        if not response.headers.get("content-type", "").startswith("application/json"):
            raise PermanentError(
                f"{self.options.url}/api/ did not answer with JSON: is this Paperless-ngx?"
            )

    # -- export -------------------------------------------------------------------

    def export(self, item: ExportItem) -> ExportResult:
        checksum = _md5(item)
        existing = self._find_by_checksum(checksum)
        if existing is not None:
            return ExportResult(remote_ref=str(existing))
        form = self._form(item)
        with _reading(item) as stream:
            filename = _file_name(item.remote_name)
            response = self._request(
                "POST",
                "/api/documents/post_document/",
                data=form,
                files={"document": (filename, stream, item.document.media_type)},
            )
        task_id = response.json()
        if not isinstance(task_id, str) or not task_id:
            raise TransientError(f"Paperless-ngx answered the upload with {task_id!r}, no task id")
        return ExportResult(remote_ref=str(self._wait_for(task_id, item.remote_name)))

    def _form(self, item: ExportItem) -> dict[str, Any]:
        document = item.document
        form: dict[str, Any] = {"title": _title(item.remote_name)}
        if document.document_date is not None:
            form["created"] = document.document_date.isoformat()
        if document.company:
            name = self.options.correspondents.get(document.company, document.company)
            form["correspondent"] = str(self._object_id("correspondents", name))
        type_names = {**DEFAULT_DOCUMENT_TYPES, **self.options.document_types}
        type_name = type_names.get(document.type)
        if type_name:
            form["document_type"] = str(self._object_id("document_types", type_name))
        tags = list(self.options.tags)
        if self.options.copy_tags:
            tags += sorted(document.tags)
        # Tags match case-insensitively in invoicesync (SPEC section 1): one id each.
        ids = {self._object_id("tags", tag) for tag in tags}
        if ids:
            form["tags"] = [str(i) for i in sorted(ids)]
        return form

    def _wait_for(self, task_id: str, name: str) -> int:
        """Poll the consumption task until Paperless has the document."""
        deadline = time.monotonic() + self.options.task_timeout
        delay = min(0.05, self.options.poll_interval)
        while True:
            tasks = self._request("GET", "/api/tasks/", params={"task_id": task_id}).json()
            task = tasks[0] if isinstance(tasks, list) and tasks else None
            status = task.get("status") if isinstance(task, dict) else None
            if status == "SUCCESS" and isinstance(task, dict):
                related = task.get("related_document")
                if related is not None and str(related).isdigit():
                    return int(related)
                raise TransientError(
                    f"Paperless-ngx task {task_id} succeeded without a document id"
                )
            if status in ("FAILURE", "REVOKED") and isinstance(task, dict):
                result = str(task.get("result") or "")
                duplicate = _DUPLICATE_ID.search(result)
                if duplicate:
                    return int(duplicate[1])
                raise PermanentError(f"Paperless-ngx did not consume {name!r}: {result or status}")
            if time.monotonic() >= deadline or self.context.stop.is_set():
                raise TransientError(
                    f"Paperless-ngx is still consuming {name!r} (task {task_id}) after "
                    f"{self.options.task_timeout}s; the next attempt will find it by checksum"
                )
            # Consumption takes seconds (OCR): start fast, then back off to poll_interval.
            time.sleep(delay)
            delay = min(delay * 2, self.options.poll_interval)

    def _find_by_checksum(self, checksum: str) -> int | None:
        """The id of a document whose original file has this MD5, if any."""
        found = self._request(
            "GET", "/api/documents/", params={"checksum__iexact": checksum, "page_size": 5}
        ).json()
        for candidate in found.get("results", [])[:5]:
            # Confirm: a server that ignored the filter would list every document.
            meta = self._request("GET", f"/api/documents/{int(candidate['id'])}/metadata/").json()
            if str(meta.get("original_checksum", "")).lower() == checksum:
                return int(candidate["id"])
        return None

    def _object_id(self, kind: str, name: str) -> int:
        """The id of the correspondent/document type/tag with this name; created if missing."""
        with self._objects_lock:
            return self._object_id_locked(kind, name)

    def _object_id_locked(self, kind: str, name: str) -> int:
        known = self._ids.get(kind)
        if known is None:
            known = self._ids[kind] = self._list_objects(kind)
        key = name.casefold()
        if key in known:
            return known[key]
        what = _OBJECT_KINDS[kind]
        if not self.options.create_missing:
            raise PermanentError(
                f"Paperless-ngx has no {what} named {name!r} and create_missing is false"
            )
        try:
            created = self._request(
                "POST", f"/api/{kind}/", json={"name": name, "matching_algorithm": 0}
            ).json()
        except PermanentError:
            # Someone else created it meanwhile (unique name): read the list again.
            known.update(self._list_objects(kind))
            if key in known:
                return known[key]
            raise
        known[key] = int(created["id"])
        return known[key]

    def _list_objects(self, kind: str) -> dict[str, int]:
        names: dict[str, int] = {}
        params: dict[str, str] = {"page_size": "100"}
        for _ in range(10_000):  # a bound, in case a server's "next" never ends
            page = self._request("GET", f"/api/{kind}/", params=params).json()
            for obj in page.get("results", []):
                names.setdefault(str(obj["name"]).casefold(), int(obj["id"]))
            next_url = page.get("next")
            if not next_url:
                return names
            # Follow only the query of "next": behind a proxy its host may be
            # wrong, and the token must never go to another host.
            params = dict(parse_qsl(urlsplit(next_url).query))
        raise TransientError(f"Paperless-ngx keeps paginating /api/{kind}/")


def _md5(item: ExportItem) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with _reading(item) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _reading(item: ExportItem) -> Iterator[IO[bytes]]:
    """Open the item's content; a failure to read it is worth a retry."""
    try:
        with item.open() as stream:
            yield stream
    except OSError as exc:
        raise TransientError(f"reading the content of {item.document.id} failed: {exc}") from exc


def _title(remote_name: str) -> str:
    """The remote name without its extension, printable, at most 128 characters."""
    name = _CONTROL.sub("_", remote_name).strip()
    suffix = PurePosixPath(name).suffix
    if suffix and len(suffix) < len(name):
        name = name[: -len(suffix)]
    return name[:TITLE_MAX].strip() or "document"


def _file_name(remote_name: str) -> str:
    leaf = _CONTROL.sub("_", remote_name.replace("\\", "/")).rsplit("/", 1)[-1].strip()
    return leaf[-200:] if leaf not in ("", ".", "..") else "document.pdf"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
