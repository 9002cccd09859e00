"""A small Paperless-ngx server for tests, on loopback, in a thread.

It implements the part of the REST API that the ``paperless`` target uses,
as Paperless-ngx documents it in "REST API" (https://docs.paperless-ngx.com/api/):

- token authentication: ``Authorization: Token <token>``, 401 otherwise;
- ``GET /api/``: the API root;
- ``POST /api/documents/post_document/``: a multipart form with the file in
  ``document`` and the optional fields ``title``, ``created``,
  ``correspondent``, ``document_type`` and ``tags`` (repeated), answered with
  the UUID of the consumption task;
- ``GET /api/tasks/?task_id=UUID``: the task's ``status`` (PENDING, STARTED,
  SUCCESS, FAILURE), ``result`` and ``related_document``;
- ``GET /api/documents/`` (filter ``checksum__iexact``),
  ``GET /api/documents/ID/metadata/`` (``original_checksum``) and
  ``GET /api/documents/ID/download/``;
- ``GET``/``POST`` ``/api/correspondents/``, ``/api/document_types/`` and
  ``/api/tags/``, paginated as ``{"count", "next", "previous", "results"}``.

Consumption follows Paperless-ngx's consumer: a file whose MD5 checksum is
already stored fails with "It is a duplicate of TITLE (#ID)", an empty file
fails as an unsupported type. It happens after ``consume_after_polls`` task
polls, so clients must really poll. Uploads cut short are discarded.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

OBJECT_KINDS = ("correspondents", "document_types", "tags")


@dataclass
class StoredDocument:
    id: int
    title: str
    original_file_name: str
    content: bytes
    checksum: str
    created: str | None
    correspondent: int | None
    document_type: int | None
    tags: list[int]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "original_file_name": self.original_file_name,
            "created": self.created,
            "correspondent": self.correspondent,
            "document_type": self.document_type,
            "tags": self.tags,
        }


@dataclass
class Task:
    task_id: str
    file_name: str
    form: dict[str, list[str]]
    content: bytes
    polls: int = 0
    status: str = "PENDING"
    result: str | None = None
    related_document: str | None = None


@dataclass
class FakePaperless:
    token: str = "test-token-0123456789"
    page_size: int = 25
    consume_after_polls: int = 2
    #: How ``checksum__iexact`` behaves: "honour" (as documented), "ignore"
    #: (list every document, like a server without that filter) or "miss"
    #: (find nothing, as if the stored checksum were computed differently).
    checksum_filter: str = "honour"
    objects: dict[str, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {kind: {} for kind in OBJECT_KINDS}
    )
    documents: dict[int, StoredDocument] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    uploads: int = 0
    #: Answers to give to the next post_document calls instead of accepting:
    #: (status, json body, extra headers).
    post_failures: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> FakePaperless:
        fake = self

        class Handler(_Handler):
            server_state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- helpers for tests --------------------------------------------------------

    def add_object(self, kind: str, name: str) -> int:
        with self._lock:
            return self._create_object(kind, name)

    def names(self, kind: str, ids: list[int] | int | None) -> list[str]:
        if ids is None:
            return []
        wanted = [ids] if isinstance(ids, int) else ids
        return sorted(self.objects[kind][i]["name"] for i in wanted)

    def find_object(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.objects[kind].values() if o["name"] == name), None)

    # -- the "database" -----------------------------------------------------------

    def _take_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    def _create_object(self, kind: str, name: str, matching_algorithm: int = 1) -> int:
        new_id = self._take_id()
        self.objects[kind][new_id] = {
            "id": new_id,
            "slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
            "name": name,
            "match": "",
            "matching_algorithm": matching_algorithm,
            "is_insensitive": True,
            "document_count": 0,
        }
        return new_id

    def _advance(self, task: Task) -> None:
        """Consume the upload once the task was polled often enough."""
        task.polls += 1
        if task.status in ("SUCCESS", "FAILURE"):
            return
        if task.polls < self.consume_after_polls:
            task.status = "STARTED"
            return
        checksum = hashlib.md5(task.content).hexdigest()
        existing = next((d for d in self.documents.values() if d.checksum == checksum), None)
        if existing is not None:
            task.status = "FAILURE"
            task.result = (
                f"{task.file_name}: Not consuming {task.file_name}: "
                f"It is a duplicate of {existing.title} (#{existing.id})."
            )
            return
        if not task.content:
            task.status = "FAILURE"
            task.result = f"{task.file_name}: Unsupported mime type application/x-empty"
            return
        form = task.form
        title = (form.get("title") or [""])[0] or task.file_name.rsplit(".", 1)[0]
        document = StoredDocument(
            id=self._take_id(),
            title=title,
            original_file_name=task.file_name,
            content=task.content,
            checksum=checksum,
            created=(form.get("created") or [None])[0],
            correspondent=_int_or_none(form.get("correspondent")),
            document_type=_int_or_none(form.get("document_type")),
            tags=[int(t) for t in form.get("tags", [])],
        )
        self.documents[document.id] = document
        task.status = "SUCCESS"
        task.result = f"Success. New document id {document.id} created"
        task.related_document = str(document.id)


def _int_or_none(values: list[str] | None) -> int | None:
    return int(values[0]) if values else None


class _Handler(BaseHTTPRequestHandler):
    server_state: FakePaperless
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's
        # algorithm and delayed ACKs add 40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    # -- plumbing -----------------------------------------------------------------

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type",
            "application/octet-stream" if isinstance(body, bytes) else "application/json",
        )
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Api-Version", "9")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Token {self.server_state.token}":
            return True
        self._send(401, {"detail": "Invalid token."})
        return False

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = b""
        while len(body) < length:
            chunk = self.rfile.read(length - len(body))
            if not chunk:
                return None  # the client went away half-way
            body += chunk
        return body

    def _paginate(self, items: list[dict[str, Any]], query: dict[str, list[str]]) -> None:
        state = self.server_state
        size = min(int(query.get("page_size", [state.page_size])[0]), state.page_size)
        page = int(query.get("page", ["1"])[0])
        start = (page - 1) * size
        base = f"{state.url}{urlsplit(self.path).path}"

        def link(number: int) -> str:
            params = {k: v[0] for k, v in query.items()}
            params["page"] = str(number)
            return f"{base}?{urlencode(params)}"

        self._send(
            200,
            {
                "count": len(items),
                "next": link(page + 1) if start + size < len(items) else None,
                "previous": link(page - 1) if page > 1 else None,
                "results": items[start : start + size],
            },
        )

    # -- routes ---------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._authorised():
            return
        state = self.server_state
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path
        with state._lock:
            if path == "/api/":
                self._send(
                    200, {k: f"{state.url}/api/{k}/" for k in ("documents", "tasks", *OBJECT_KINDS)}
                )
            elif path == "/api/tasks/":
                task = state.tasks.get(query.get("task_id", [""])[0])
                if task is None:
                    self._send(200, [])
                    return
                state._advance(task)
                self._send(
                    200,
                    [
                        {
                            "id": 1,
                            "task_id": task.task_id,
                            "task_file_name": task.file_name,
                            "type": "file",
                            "status": task.status,
                            "result": task.result,
                            "acknowledged": False,
                            "related_document": task.related_document,
                        }
                    ],
                )
            elif path == "/api/documents/":
                docs = list(state.documents.values())
                wanted = query.get("checksum__iexact")
                if wanted and state.checksum_filter == "honour":
                    docs = [d for d in docs if d.checksum == wanted[0].lower()]
                elif wanted and state.checksum_filter == "miss":
                    docs = []
                self._paginate([d.as_json() for d in docs], query)
            elif m := re.fullmatch(r"/api/documents/(\d+)/(metadata|download)/", path):
                doc = state.documents.get(int(m[1]))
                if doc is None:
                    self._send(404, {"detail": "No Document matches the given query."})
                elif m[2] == "download":
                    self._send(200, doc.content)
                else:
                    self._send(
                        200,
                        {"original_checksum": doc.checksum, "original_size": len(doc.content)},
                    )
            elif (kind := path.strip("/").removeprefix("api/")) in OBJECT_KINDS:
                items = sorted(state.objects[kind].values(), key=lambda o: o["id"])
                self._paginate(items, query)
            else:
                self._send(404, {"detail": "Not found."})

    def do_POST(self) -> None:
        if not self._authorised():
            self.close_connection = True
            return
        state = self.server_state
        path = urlsplit(self.path).path
        body = self._read_body()
        if body is None:
            self.close_connection = True
            return
        with state._lock:
            if path == "/api/documents/post_document/":
                self._post_document(body)
            elif (kind := path.strip("/").removeprefix("api/")) in OBJECT_KINDS:
                data = json.loads(body or b"{}")
                name = data.get("name")
                if not isinstance(name, str) or not name:
                    self._send(400, {"name": ["This field is required."]})
                elif any(o["name"] == name for o in state.objects[kind].values()):
                    self._send(400, {"error": "Object violates owner / name unique constraint"})
                else:
                    new_id = state._create_object(kind, name, data.get("matching_algorithm", 1))
                    self._send(201, state.objects[kind][new_id])
            else:
                self._send(404, {"detail": "Not found."})

    def _post_document(self, body: bytes) -> None:
        state = self.server_state
        if state.post_failures:
            status, payload, headers = state.post_failures.pop(0)
            self._send(status, payload, headers)
            return
        form, files = _parse_multipart(self.headers.get("Content-Type", ""), body)
        if "document" not in files:
            self._send(400, {"document": ["No file was submitted."]})
            return
        errors: dict[str, list[str]] = {}
        title = (form.get("title") or [""])[0]
        if len(title) > 128:
            errors["title"] = ["Ensure this field has no more than 128 characters."]
        created = (form.get("created") or [None])[0]
        if created is not None:
            try:
                (date if len(created) == 10 else datetime).fromisoformat(created)
            except ValueError:
                errors["created"] = ["Datetime has wrong format."]
        for key, kind in (
            ("correspondent", "correspondents"),
            ("document_type", "document_types"),
            ("tags", "tags"),
        ):
            for value in form.get(key, []):
                if not value.isdigit() or int(value) not in state.objects[kind]:
                    errors.setdefault(key, []).append(
                        f'Invalid pk "{value}" - object does not exist.'
                    )
        if errors:
            self._send(400, errors)
            return
        file_name, content = files["document"]
        task = Task(str(uuid.uuid4()), file_name, form, content)
        state.tasks[task.task_id] = task
        state.uploads += 1
        self._send(200, task.task_id)


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, list[str]], dict[str, tuple[str, bytes]]]:
    """Split a multipart/form-data body (RFC 7578) byte-exactly."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        return {}, {}
    delimiter = b"--" + match[1].encode()
    form: dict[str, list[str]] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part[2:].partition(b"\r\n\r\n")
        data = data[:-2]  # the CRLF before the next delimiter
        disposition = next(
            (
                line.decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition")
            ),
            "",
        )
        name = re.search(r'; name="((?:[^"\\]|\\.)*)"', disposition)
        filename = re.search(r'; filename="((?:[^"\\]|\\.)*)"', disposition)
        if name is None:
            continue
        if filename is not None:
            files[name[1]] = (unquote(filename[1]), data)
        else:
            form.setdefault(name[1], []).append(data.decode())
    return form, files
