"""The ``webdav`` export target: Nextcloud, ownCloud and any RFC 4918 server.

Each export uploads to a temporary name in the destination folder and then
MOVEs it over the final name (``Overwrite: T``), so a reader never sees half a
file. The document's SHA-256 is stored as a WebDAV dead property; a re-export
of the same revision finds it and does not upload again, which keeps the ETag
(the remote reference) stable.

Each temporary name is recorded in the connector's state folder before its
upload starts and forgotten once it is moved or deleted. A temporary the
server kept because it went down before the MOVE (or because invoicesync was
killed) is deleted at the next ``check()`` or export -- only those exact
recorded names, never anything else in the folder.

XML request bodies carry ``Content-Type: application/xml; charset=utf-8``
(RFC 4918 section 8.2): lighttpd's mod_webdav answers 415 without it.

An account exports through 8 threads by default (``default_concurrency``):
each upload waits on several round trips, which overlap well. The threads
share one HTTP client whose keep-alive pool holds a connection per thread, and
the set of folders known to exist (each folder is created once per run, one
MKCOL at a time).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import unicodedata
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote, urlsplit

from invoicesync.plugins import (
    ConnectorOptions,
    ExportItem,
    ExportResult,
    PermanentError,
    RelativePath,
    Target,
    TransientError,
    split_remote_name,
)
from pydantic import SecretStr, field_validator, model_validator

if TYPE_CHECKING:
    import httpx  # imported where a client is made: not every start needs httpx

from .._remote import (
    ContentReadError,
    Duration,
    parse_retry_after,
    replace_chars,
    short_reason,
    spooled_content,
    stream_size,
)

__all__ = ["WebDAVOptions", "WebDAVTarget"]

#: Characters Nextcloud (and Windows sync clients) refuse in file names.
FORBIDDEN_CHARS = '\\/:*?"<>|'
#: Our dead-property namespace; the property holds the content's SHA-256.
NS = "urn:invoicesync:webdav"
_DAV = "{DAV:}"
_CHUNK = 256 * 1024
#: RFC 4918 section 8.2: XML request bodies are marked as such.
_XML = {"Content-Type": "application/xml; charset=utf-8"}

_PROPFIND = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<d:propfind xmlns:d="DAV:" xmlns:i="{NS}"><d:prop>'
    "<d:getetag/><d:getcontentlength/><d:resourcetype/><i:sha256/>"
    "</d:prop></d:propfind>"
).encode()


#: A PROPFIND that asks for as little as possible: only the names matter.
_PROPFIND_NAMES = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/></d:prop></d:propfind>'
)
#: A folder with more entries is not listed (memory): its names are PROPFINDed one by one.
_MAX_LISTED = 50_000
#: _list's answer for a passing failure (not remembered).
_UNKNOWN = object()


def _last_segment(href: str) -> str:
    """The decoded last path segment of an href (absolute URL or path)."""
    path = urlsplit(href.strip()).path.rstrip("/")
    return unquote(path.rsplit("/", 1)[-1])


def _name_key(name: str) -> str:
    # Servers may hand names back in another Unicode normalisation form (macOS
    # back-ends: NFD); a mismatch would only cost the PROPFIND, never a wrong skip.
    return unicodedata.normalize("NFC", name)


class WebDAVOptions(ConnectorOptions):
    """``options:`` of a ``webdav`` export."""

    url: str
    """Base URL of the user's files, e.g. ``https://cloud.example.com/remote.php/dav/files/USER/``."""
    path: str = ""
    """Folder below ``url`` that receives the documents (created if missing)."""
    username: str | None = None
    password: SecretStr | None = None
    verify_tls: bool | RelativePath = True
    """``false`` to skip certificate checks (test servers only), or a CA bundle file."""
    timeout: Duration = 30.0
    """Seconds to wait for connecting and for each read or write."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host name")
        if parts.username is not None or parts.password is not None:
            # Credentials inside the URL would end up in logs and error messages.
            raise ValueError("put the credentials in username and password, not in the URL")
        if parts.query or parts.fragment:
            raise ValueError("the URL must not have a query (?...) or fragment (#...)")
        return value.strip().rstrip("/") + "/"

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        parts = [p for p in value.strip().split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError("must not contain '.' or '..' components")
        return "/".join(parts)

    @field_validator("verify_tls")
    @classmethod
    def _check_ca(cls, value: bool | Path) -> bool | Path:
        if isinstance(value, Path) and not value.is_file():
            raise ValueError(f"CA bundle {value} does not exist")
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> WebDAVOptions:
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is missing")
        return self


class WebDAVTarget(Target[WebDAVOptions]):
    """Exports documents to a folder on a WebDAV server."""

    type_name = "webdav"
    Options = WebDAVOptions
    description = "WebDAV folder (Nextcloud, ownCloud, any RFC 4918 server)"
    default_concurrency = 8

    def __init__(self, id: str, options: WebDAVOptions, context: Any) -> None:
        super().__init__(id, options, context)
        self._base = [p for p in options.path.split("/") if p]
        self._known_dirs: set[tuple[str, ...]] = set()
        # One MKCOL at a time: the threads of a run would otherwise all create
        # the same new folder at once (harmless, but a burst of 405s and
        # PROPFINDs; some servers answer such races with 409 or 500).
        self._mkcol_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        # Per folder: the names it held when first listed this run (None: not
        # listable); see _known_absent.
        self._listings: dict[tuple[str, ...], frozenset[str] | None] = {}
        self._listing_lock = threading.Lock()
        self._journal = Path(context.state_dir) / "temporaries"
        self._swept = False
        # Held during the sweep: the other threads wait for it, or it could
        # take their fresh journal entries for leftovers and delete their uploads.
        self._sweep_lock = threading.Lock()

    # -- public API -----------------------------------------------------------

    def sanitize_component(self, component: str) -> str:
        """Replace what Nextcloud rejects: ``\\ / : * ? " < > |`` and trailing dots/spaces."""
        out = replace_chars(component, FORBIDDEN_CHARS, strip_trailing=". ")
        # Nextcloud reserves the .part suffix for its own chunked uploads.
        if out.lower().endswith((".part", ".filepart")):
            out += "_"
        return out

    def check(self) -> None:
        """PROPFIND the base URL, create the folder, write and delete a probe file."""
        response = self._request(
            "PROPFIND", self.options.url, headers={"Depth": "0", **_XML}, content=_PROPFIND
        )
        if response.status_code == 404:
            raise PermanentError(f"WebDAV base URL {self.options.url} does not exist (HTTP 404)")
        self._raise_for_status(response, "PROPFIND", self.options.url)
        self._sweep_temporaries()
        self._ensure_dirs(tuple(self._base))
        probe = self._url([f".invoicesync-check-{uuid.uuid4().hex[:12]}"])
        self._raise_for_status(
            self._request("PUT", probe, content=b"invoicesync write check\n"), "PUT", probe
        )
        self._raise_for_status(self._request("DELETE", probe), "DELETE", probe)

    def export(self, item: ExportItem) -> ExportResult:
        parts = split_remote_name(item.remote_name, forbidden=FORBIDDEN_CHARS.replace("/", ""))
        final = self._url(parts)
        self._sweep_temporaries()
        folder = tuple(self._base + parts[:-1])
        # A name the folder's listing did not have needs no PROPFIND: the MOVE
        # then says "Overwrite: F", and should the name exist by now after all
        # (412), the usual checks run then. A name that was there is checked now.
        absent = self._known_absent(folder, parts[-1])
        if not absent:
            done = self._delivered(self._stat(final), final, item)
            if done is not None:
                return done
        self._ensure_dirs(folder)
        token = uuid.uuid4().hex[:16]
        temp = self._url([*parts[:-1], f".invoicesync-{token}.tmp"])
        self._remember(token, temp)
        try:
            response = self._put(temp, item)
            if response.status_code == 409:
                # The folder vanished since we created it: forget and retry once.
                self._known_dirs.clear()
                self._ensure_dirs(folder)
                response = self._put(temp, item)
            self._raise_for_status(response, "PUT", temp)
            self._set_sha256(temp, item.document.sha256)
            response = self._move(temp, final, overwrite=not absent)
            if response.status_code == 412 and absent:
                # The name appeared after the folder was listed (another client,
                # or a document of this run with the same name): check it now.
                done = self._delivered(self._stat(final), final, item)
                if done is not None:
                    if self._discard(temp):
                        self._forget(token)
                    return done
                response = self._move(temp, final, overwrite=True)
            self._raise_for_status(response, "MOVE", final)
        except BaseException:
            if self._discard(temp):
                self._forget(token)
            raise
        self._forget(token)
        stat = self._stat(final)
        if stat is None:
            raise TransientError(f"WebDAV server does not show {final} right after MOVE")
        return ExportResult(stat.get("etag") or final)

    def close(self) -> None:
        with self._listing_lock:
            self._listings.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    def _delivered(
        self, existing: dict[str, str] | None, final: str, item: ExportItem
    ) -> ExportResult | None:
        """The result when ``final`` already holds this revision; raise if it is a folder."""
        if existing is not None and existing.get("collection"):
            raise PermanentError(f"WebDAV {final} is a folder; cannot store a document there")
        if existing is not None and existing.get("sha256") == item.document.sha256:
            # Same revision already there (a redelivery after a crash): keep it.
            return ExportResult(existing.get("etag") or final)
        return None

    def _move(self, temp: str, final: str, *, overwrite: bool) -> httpx.Response:
        headers = {"Destination": final, "Overwrite": "T" if overwrite else "F"}
        return self._request("MOVE", temp, headers=headers)

    # -- folder listings: which names are surely absent ------------------------------

    def _known_absent(self, folder: tuple[str, ...], name: str) -> bool:
        """Whether ``name`` was not in ``folder`` when this run first listed it.

        One ``PROPFIND Depth: 1`` per folder and run replaces a PROPFIND per
        document for the names that are not there yet (a first export). Only
        absence is trusted: what was there is looked at again before use.
        """
        if folder not in self._listings:
            with self._listing_lock:
                if folder not in self._listings:
                    listing = self._list(folder)
                    if listing is _UNKNOWN:
                        return False  # a passing failure: not remembered, tried again
                    self._listings[folder] = listing
        names = self._listings[folder]
        return names is not None and _name_key(name) not in names

    def _list(self, folder: tuple[str, ...]) -> Any:
        """The names in ``folder`` (empty if it does not exist), None when the
        server will not list it (or it is too large to keep), _UNKNOWN on a
        passing failure."""
        import httpx

        url = self.options.url + "".join(quote(p, safe="") + "/" for p in folder)
        names: set[str] = set()
        parser: ET.XMLPullParser[Any] = ET.XMLPullParser(events=("end",))
        try:
            with self.client.stream(
                "PROPFIND", url, headers={"Depth": "1", **_XML}, content=_PROPFIND_NAMES
            ) as response:
                if response.status_code != 207:
                    # Read the (short) error page: a response closed unread
                    # costs its keep-alive connection.
                    response.read()
                if response.status_code == 404:
                    return frozenset()
                if response.status_code != 207:
                    # 403 (Depth 1 refused) and the like: fall back for good.
                    return None if response.status_code < 500 else _UNKNOWN
                for chunk in response.iter_bytes():
                    parser.feed(chunk)
                    events = cast("Iterator[tuple[str, Any]]", parser.read_events())
                    for _kind, element in events:
                        if not isinstance(element, ET.Element):
                            continue
                        if element.tag == f"{_DAV}href" and element.text:
                            names.add(_name_key(_last_segment(element.text)))
                        elif element.tag == f"{_DAV}response":
                            element.clear()  # keep memory flat on a large folder
                    if len(names) > _MAX_LISTED:
                        return None
        except (httpx.HTTPError, ET.ParseError):
            return _UNKNOWN
        return frozenset(names)

    # -- HTTP -------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> httpx.Client:
        import httpx

        o = self.options
        verify: bool | str = str(o.verify_tls) if isinstance(o.verify_tls, Path) else o.verify_tls
        auth = None
        if o.username:
            secret = o.password.get_secret_value() if o.password else ""
            auth = httpx.BasicAuth(o.username, secret)
        # httpx.Client is thread-safe; its pool keeps one keep-alive
        # connection per export thread (up to the 32 an account may have),
        # so no upload pays for a new TCP (and TLS) handshake.
        return httpx.Client(
            auth=auth,
            verify=verify,
            timeout=httpx.Timeout(o.timeout),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            follow_redirects=False,
            headers={"User-Agent": "invoicesync-webdav"},
        )

    def _url(self, parts: list[str]) -> str:
        # Every component is percent-encoded whole: '/', '%', '#', '?' inside a
        # name stay literal characters and can never change the path's shape.
        return self.options.url + "/".join(quote(p, safe="") for p in [*self._base, *parts])

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self.client.request(method, url, **kwargs)
        except ContentReadError as exc:
            raise TransientError(f"could not read the document's content: {exc}") from None
        except httpx.TimeoutException:
            raise TransientError(
                f"WebDAV {method} {url} timed out after {self.options.timeout:g}s"
            ) from None
        except httpx.TransportError as exc:
            text = short_reason(str(exc)) or type(exc).__name__
            if "CERTIFICATE_VERIFY_FAILED" in text:
                raise PermanentError(
                    f"WebDAV server {self.options.url} has an untrusted TLS certificate ({text}); "
                    "set verify_tls to a CA bundle"
                ) from None
            raise TransientError(f"WebDAV {method} {url} failed: {text}") from None

    def _put(self, url: str, item: ExportItem) -> httpx.Response:
        with item.open() as original, spooled_content(original, self.context) as stream:
            size = stream_size(stream, item.document.size)
            return self._request(
                "PUT",
                url,
                content=_read_chunks(stream, self.context.stop),
                headers={
                    # An explicit length (not chunked encoding): Nextcloud and
                    # several proxies handle chunked PUT badly, and it lets the
                    # server notice a body that ends early.
                    "Content-Length": str(size),
                    "Content-Type": item.document.media_type or "application/octet-stream",
                },
            )

    def _raise_for_status(self, response: httpx.Response, method: str, url: str) -> None:
        code = response.status_code
        if code < 300:
            return
        reason = _server_message(response) or response.reason_phrase
        message = f"WebDAV {method} {url} failed: HTTP {code} {reason}".rstrip()
        if code == 401:
            message += " (check username and password)"
        if 300 <= code < 400:
            location = response.headers.get("Location", "")
            raise PermanentError(f"{message}: redirected to {location!r}; check the url option")
        if code in (408, 423, 425, 429) or (code >= 500 and code not in (501, 505, 507)):
            raise TransientError(
                message, retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        raise PermanentError(message)

    def _ensure_dirs(self, folder: tuple[str, ...]) -> None:
        """MKCOL each missing folder level, top-down, remembering what exists."""
        if not folder or folder in self._known_dirs:
            return  # the usual case: no lock, no request
        with self._mkcol_lock:
            self._make_dirs(folder)

    def _make_dirs(self, folder: tuple[str, ...]) -> None:
        for depth in range(1, len(folder) + 1):
            prefix = folder[:depth]
            if prefix in self._known_dirs:
                continue
            url = self.options.url + "/".join(quote(p, safe="") for p in prefix) + "/"
            response = self._request("MKCOL", url)
            # 201 created; 405 it already exists (RFC 4918 9.3.1). Another
            # export (a thread of ours, or another client) may create the same
            # folder at the same moment, and some servers then answer 409 or
            # even 500: if the folder exists now, that is all we wanted.
            if response.status_code not in (201, 405) and not self._is_collection(url):
                self._raise_for_status(response, "MKCOL", url)
                if response.status_code >= 300:  # pragma: no cover - raised above
                    raise PermanentError(f"MKCOL {url}: HTTP {response.status_code}")
            self._known_dirs.add(prefix)

    def _is_collection(self, url: str) -> bool:
        """Whether ``url`` exists now (a PROPFIND that does not raise)."""
        response = self._request("PROPFIND", url, headers={"Depth": "0", **_XML}, content=_PROPFIND)
        return response.status_code == 207

    def _stat(self, url: str) -> dict[str, str] | None:
        """ETag and stored SHA-256 of a file, None if it does not exist."""
        response = self._request("PROPFIND", url, headers={"Depth": "0", **_XML}, content=_PROPFIND)
        if response.status_code == 404:
            return None
        self._raise_for_status(response, "PROPFIND", url)
        if response.status_code != 207:
            return {}
        return _parse_props(response.content)

    def _set_sha256(self, url: str, sha256: str) -> None:
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<d:propertyupdate xmlns:d="DAV:" xmlns:i="{NS}"><d:set><d:prop>'
            f"<i:sha256>{sha256}</i:sha256></d:prop></d:set></d:propertyupdate>"
        ).encode()
        # Best effort: a server without dead properties just re-uploads on redelivery.
        response = self._request("PROPPATCH", url, headers=_XML, content=body)
        if response.status_code >= 500 or response.status_code == 429:
            self._raise_for_status(response, "PROPPATCH", url)

    def _discard(self, url: str) -> bool:
        """Delete a temporary upload; whether it is gone. Never raises (the
        original error matters more)."""
        deadline = time.monotonic() + min(5.0, self.options.timeout)
        while True:
            try:
                response = self.client.request("DELETE", url)
            except Exception:
                return False
            # The server may still be finishing the aborted PUT and recreate the
            # file after our DELETE; confirm it is gone (bounded).
            if response.status_code not in (200, 204, 404) or time.monotonic() > deadline:
                return False
            try:
                probe = self.client.request("PROPFIND", url, headers={"Depth": "0"})
            except Exception:
                return False
            if probe.status_code == 404:
                return True
            time.sleep(0.05)

    # -- temporaries left on the server -------------------------------------------

    def _remember(self, token: str, url: str) -> None:
        """Record a temporary's URL before uploading it (fsynced: a kill -9 may follow)."""
        self._journal.mkdir(parents=True, exist_ok=True)
        path = self._journal / token
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, url.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _forget(self, token: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._journal / token).unlink()

    def _sweep_temporaries(self) -> None:
        """Delete the temporaries an earlier run recorded and could not remove.

        Once per target instance (a run). Only recorded names are touched, and
        only below this target's URL; a server still down keeps them recorded
        for the next run.
        """
        if self._swept:
            return
        with self._sweep_lock:
            if not self._swept:
                self._sweep()
                self._swept = True

    def _sweep(self) -> None:
        try:
            entries = sorted(self._journal.iterdir())
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                url = entry.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            name = url.rsplit("/", 1)[-1]
            if not (url.startswith(self.options.url) and name == f".invoicesync-{entry.name}.tmp"):
                # Not a temporary of this target (its url option changed): leave it.
                continue
            if self._discard(url):
                self._forget(entry.name)


def _read_chunks(stream: IO[bytes], stop: threading.Event) -> Iterator[bytes]:
    while True:
        if stop.is_set():
            # Abandon the upload cleanly on shutdown: the PUT is cut short and
            # the temporary file deleted, like any interrupted upload.
            raise ContentReadError("invoicesync is stopping")
        try:
            chunk = stream.read(_CHUNK)
        except Exception as exc:
            raise ContentReadError(short_reason(str(exc)) or type(exc).__name__) from None
        if not chunk:
            return
        yield chunk


def _server_message(response: httpx.Response) -> str:
    """Sabre (Nextcloud/ownCloud) puts the reason into ``<s:message>``."""
    if "xml" not in response.headers.get("Content-Type", ""):
        return ""
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError:
        return ""
    for element in root.iter():
        if element.tag.endswith("}message") and element.text:
            return short_reason(element.text)
    return ""


def _parse_props(body: bytes) -> dict[str, str]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise TransientError(f"WebDAV server sent an unreadable PROPFIND answer: {exc}") from None
    props: dict[str, str] = {}
    for propstat in root.iter(f"{_DAV}propstat"):
        status = propstat.findtext(f"{_DAV}status") or ""
        if " 200 " not in f"{status} ":
            continue
        for prop in propstat.iter(f"{_DAV}prop"):
            etag = prop.findtext(f"{_DAV}getetag")
            if etag:
                props["etag"] = etag.strip()
            sha = prop.findtext(f"{{{NS}}}sha256")
            if sha:
                props["sha256"] = sha.strip()
            if prop.find(f"{_DAV}resourcetype/{_DAV}collection") is not None:
                props["collection"] = "1"
    return props
