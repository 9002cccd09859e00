"""The ``http_portal`` source: documents listed by a JSON API and downloaded one by one.

Most supplier portals and document APIs look alike: a list endpoint that
returns JSON items (paginated by page number, by an opaque cursor, or by
``Link: <...>; rel="next"`` headers), one download URL per item, and some form
of token. This source is configured to the shape of one such API instead of
coded for it.

Design decisions, and why:

* **Incremental fetch.** With ``since_param``/``since_field`` the cursor is the
  largest ``since_field`` value seen (numbers compare as numbers, anything
  else -- ISO dates and timestamps -- as strings); the next fetch sends it as
  ``since_param``. Because a list is not necessarily sorted by that field,
  the cursor advances only when a fetch completes: an interrupted fetch
  repeats, and the catalog recognises what it already holds.
* **Retries.** 429 and 503 wait for ``Retry-After`` (seconds or an HTTP date,
  capped at ``retry.max``); other 5xx and connection errors back off
  exponentially with jitter. After ``retry.attempts`` the fetch ends with a
  TransientError carrying the server's hint, so the engine retries later.
* **Downloads** stream into a temporary file under the state folder and are
  checked against ``Content-Length``: a download that breaks off is retried,
  and never handed to the catalog half-way.
* **Credentials** go only to the origin (scheme, host, port) of ``base_url``.
  Download URLs and redirects to another host (a CDN, pre-signed storage
  URLs) are fetched without them; redirects are followed by this code, not
  by httpx, so that the rule covers the API-key header too.
* **Bad items.** An item whose mapped fields do not validate is skipped with
  a reason that names the item id and the field; the other items import.
"""

from __future__ import annotations

import base64
import contextlib
import email.message
import email.utils
import json
import mimetypes
import random
import re
import tempfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from invoicesync.plugins import (
    ConfigurationError,
    ConnectorError,
    ConnectorOptions,
    DocumentMetadata,
    DocumentType,
    FetchResult,
    PaymentStatus,
    RelativePath,
    SkippedDocument,
    Source,
    SourceDocument,
    TransientError,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .._filenames import clean_text, safe_filename

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpPortalOptions", "HttpPortalSource", "get_path"]

_CURSOR_VERSION = 1
_PATH = re.compile(r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$")
_MISSING = object()
_MAX_REDIRECTS = 5
_SPOOL_THRESHOLD = 1024 * 1024
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _dotted(value: str) -> str:
    if not _PATH.match(value):
        raise ValueError(
            f"{value!r} is not a dotted path such as total.gross "
            "(letters, digits, '_', '-', '$', '@' between dots)"
        )
    return value


DottedPath = Annotated[str, AfterValidator(_dotted)]
"""A path into a JSON object: keys separated by dots, digits index lists."""


def get_path(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``data``, or the ``_MISSING`` marker."""
    current = data
    for key in path.split("."):
        if isinstance(current, dict):
            if key not in current:
                return _MISSING
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return _MISSING
    return current


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built when configured


class Pagination(_Strict):
    """How the list endpoint pages (``style: none`` is a single request)."""

    style: Literal["none", "page", "cursor", "link"] = "none"
    page_param: str = "page"
    first_page: int = 1
    size_param: str | None = None
    page_size: int | None = Field(default=None, ge=1)
    cursor_param: str = "cursor"
    cursor_field: DottedPath | None = None
    """Where the next cursor is in a list response (``style: cursor``)."""
    max_pages: int = Field(default=10_000, ge=1)
    """A guard against portals that never stop paging."""

    @model_validator(mode="after")
    def _cursor_needs_field(self) -> Pagination:
        if self.style == "cursor" and not self.cursor_field:
            raise ValueError("style: cursor needs cursor_field (where the next cursor is)")
        if (self.size_param is None) != (self.page_size is None) and self.size_param:
            raise ValueError("size_param needs page_size")
        return self


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: str
    password: SecretStr


class ApiKeyAuth(_Strict):
    type: Literal["api_key"]
    header: str = "X-API-Key"
    query_param: str | None = None
    """Send the key as this query parameter instead of a header."""
    value: SecretStr


Auth = Annotated[BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="type")]


class ValueMap(_Strict):
    """Translate a portal's value (``INV``) into ours (``incoming_invoice``)."""

    field: DottedPath
    map: dict[str, str] = Field(default_factory=dict)
    default: str | None = None
    """Used for values not in ``map``; without it such an item is skipped."""


class FieldMapping(_Strict):
    """Where each document field is in a list item (dotted paths)."""

    number: DottedPath | None = None
    type: DottedPath | ValueMap | None = None
    document_date: DottedPath | None = None
    due_date: DottedPath | None = None
    net_amount: DottedPath | None = None
    gross_amount: DottedPath | None = None
    currency: DottedPath | None = None
    company: DottedPath | ValueMap | None = None
    payment_status: DottedPath | ValueMap | None = None
    approved: DottedPath | None = None
    tags: DottedPath | None = None
    note: DottedPath | None = None
    filename: DottedPath | None = None
    fields: dict[str, DottedPath] = Field(default_factory=dict)
    """Custom attributes: ``{cost_center: "meta.cc"}``."""

    @model_validator(mode="after")
    def _mapped_values_valid(self) -> FieldMapping:
        for name, enum in (("type", DocumentType), ("payment_status", PaymentStatus)):
            spec = getattr(self, name)
            if isinstance(spec, ValueMap):
                allowed = {e.value for e in enum}
                for value in [*spec.map.values(), *([spec.default] if spec.default else [])]:
                    if value not in allowed:
                        raise ValueError(
                            f"{name}: {value!r} is not one of {', '.join(sorted(allowed))}"
                        )
        return self


class Retry(_Strict):
    """Back-off for 429, 5xx and broken connections."""

    attempts: int = Field(default=5, ge=1, le=20)
    initial: float = Field(default=1.0, ge=0)
    max: float = Field(default=60.0, ge=0)
    """Upper bound of one wait, Retry-After included."""


class HttpPortalOptions(ConnectorOptions):
    """Options of the ``http_portal`` source (see docs/connectors/http_portal.md)."""

    base_url: str
    list_path: str = "/documents"
    list_params: dict[str, str] = Field(default_factory=dict)
    pagination: Pagination = Field(default_factory=Pagination)
    items_field: DottedPath | None = None
    """Where the item list is in a list response; unset: the response is the list."""
    id_field: DottedPath = "id"
    download_url_field: DottedPath | None = None
    download_path: str | None = None
    """URL template relative to base_url, e.g. ``/documents/{id}/file``."""
    auth: Auth | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    since_param: str | None = None
    since_field: DottedPath | None = None
    mapping: FieldMapping = Field(default_factory=FieldMapping)
    company: str | None = None
    """Company profile id for documents the mapping gives none."""
    timeout: float = Field(default=30.0, gt=0)
    retry: Retry = Field(default_factory=Retry)
    verify_tls: bool = True
    ca_file: RelativePath | None = None
    allow_insecure: bool = False
    """Required to send credentials over plain http:// to a non-loopback host."""

    @field_validator("base_url")
    @classmethod
    def _base_url_shape(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host name")
        if parts.username or parts.password:
            raise ValueError("put credentials under auth:, not into the URL")
        return value.rstrip("/") + "/"

    @model_validator(mode="after")
    def _consistent(self) -> HttpPortalOptions:
        if (self.download_url_field is None) == (self.download_path is None):
            raise ValueError("give exactly one of download_url_field and download_path")
        if self.download_path is not None and "{id}" not in self.download_path:
            raise ValueError("download_path must contain {id}")
        if (self.since_param is None) != (self.since_field is None):
            raise ValueError("since_param and since_field go together")
        parts = urlsplit(self.base_url)
        if (
            parts.scheme == "http"
            and self.auth is not None
            and parts.hostname not in _LOOPBACK
            and not self.allow_insecure
        ):
            raise ValueError(
                "credentials would travel unencrypted over http://; use https:// "
                "or set allow_insecure: true"
            )
        return self


@dataclass
class _Download:
    content: bytes | Path
    filename: str | None
    media_type: str | None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def display_url(url: str, hide_params: Iterable[str] = ()) -> str:
    """``url`` without user info and with ``hide_params`` masked (for messages and logs)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = parts.query
    hidden = set(hide_params)
    if hidden and query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k in hidden else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _filename_from_disposition(header: str | None) -> str | None:
    if not header:
        return None
    msg = email.message.Message()
    msg["Content-Disposition"] = header
    try:
        return msg.get_filename()
    except Exception:
        return None


def _as_number(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _later(a: str | None, b: str) -> str:
    """The larger of two since values (numbers as numbers, else as strings)."""
    if a is None:
        return b
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        return b if nb > na else a
    return b if b > a else a


class HttpPortalSource(Source[HttpPortalOptions]):
    """Import documents from a JSON portal API (see the module docstring)."""

    type_name = "http_portal"
    Options = HttpPortalOptions
    description = "documents from a JSON portal API (pagination, tokens, incremental)"

    def __init__(self, id: str, options: HttpPortalOptions, context: Any) -> None:
        super().__init__(id, options, context)
        self._client: httpx.Client | None = None

    # -- plumbing -------------------------------------------------------------

    def _secrets(self) -> list[str]:
        auth = self.options.auth
        if isinstance(auth, BearerAuth):
            return [auth.token.get_secret_value()]
        if isinstance(auth, BasicAuth):
            pw = auth.password.get_secret_value()
            return [pw, base64.b64encode(f"{auth.username}:{pw}".encode()).decode()]
        if isinstance(auth, ApiKeyAuth):
            return [auth.value.get_secret_value()]
        return []

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "***")
        return text

    def _display(self, url: str) -> str:
        auth = self.options.auth
        hidden = [auth.query_param] if isinstance(auth, ApiKeyAuth) and auth.query_param else []
        return self._scrub(display_url(url, hidden))

    def _log(self, level: str, event: str, **fields: Any) -> None:
        logger = self.context.logger
        if logger is None:
            return
        with contextlib.suppress(Exception):
            getattr(logger, level)(event, source=self.id, **fields)

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            o = self.options
            verify: Any = True
            if not o.verify_tls:
                verify = False
            elif o.ca_file is not None:
                import ssl

                try:
                    verify = ssl.create_default_context(cafile=str(o.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigurationError(f"cannot load ca_file {o.ca_file}: {exc}") from None
            self._client = httpx.Client(
                timeout=httpx.Timeout(o.timeout),
                verify=verify,
                follow_redirects=False,
                headers={"User-Agent": "invoicesync", **o.headers},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _auth_headers(self, url: str) -> dict[str, str]:
        auth = self.options.auth
        if auth is None or _origin(url) != _origin(self.options.base_url):
            return {}
        if isinstance(auth, BearerAuth):
            return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
        if isinstance(auth, BasicAuth):
            raw = f"{auth.username}:{auth.password.get_secret_value()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if auth.query_param:
            return {}
        return {auth.header: auth.value.get_secret_value()}

    def _with_query_key(self, url: str) -> str:
        """``url`` with the API key as query parameter, if so configured and same origin."""
        auth = self.options.auth
        if not (isinstance(auth, ApiKeyAuth) and auth.query_param):
            return url
        if _origin(url) != _origin(self.options.base_url):
            return url
        import httpx

        merged = httpx.URL(url).copy_merge_params({auth.query_param: auth.value.get_secret_value()})
        return str(merged)

    def _url(self, path: str) -> str:
        """A configured path (list_path, download_path) below base_url."""
        return urljoin(self.options.base_url, path.lstrip("/"))

    def _wait(self, seconds: float) -> None:
        if self.context.stop.wait(seconds):
            raise TransientError(f"{self.id}: stopping")

    @contextlib.contextmanager
    def _response(self, url: str, params: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """GET ``url`` (streamed) with auth, redirects, and retries.

        Yields a 2xx response whose body has not been read yet. 4xx other than
        429 raise ConnectorError at once; 429, 5xx and transport errors are
        retried with back-off, then raise TransientError.
        """
        import httpx

        o = self.options
        client = self._http()
        attempt = 0
        hint: float | None = None
        while True:
            attempt += 1
            current, current_params = url, params
            try:
                for _ in range(_MAX_REDIRECTS + 1):
                    # httpx replaces a URL's query with params=; merge instead.
                    target = httpx.URL(current)
                    if current_params:
                        target = target.copy_merge_params(current_params)
                    request = client.build_request(
                        "GET",
                        self._with_query_key(str(target)),
                        headers=self._auth_headers(current),
                    )
                    response = client.send(request, stream=True)
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(str(response.url), response.headers["location"])
                        current_params = None
                        response.close()
                        continue
                    break
                else:
                    raise ConnectorError(f"{self._display(url)}: too many redirects")
            except httpx.TransportError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    # Not going to heal by waiting.
                    raise ConnectorError(
                        f"{self._display(url)}: the server's TLS certificate is not trusted; "
                        "give its CA as ca_file"
                    ) from None
                problem = f"{type(exc).__name__}: {self._scrub(str(exc)) or 'connection failed'}"
                delay = None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        yield response
                    finally:
                        response.close()
                    return
                response.close()
                where = self._display(str(response.url))
                if status in (401, 403):
                    raise ConnectorError(
                        f"{where}: HTTP {status}: the portal refused the credentials (check auth:)"
                    )
                if status != 429 and status < 500:
                    raise ConnectorError(f"{where}: HTTP {status} {response.reason_phrase}")
                problem = f"HTTP {status}"
                delay = _retry_after(response.headers.get("retry-after"), datetime.now(UTC))
                hint = delay
            if attempt >= o.retry.attempts:
                raise TransientError(
                    f"{self._display(url)}: {problem} (gave up after {attempt} attempts)",
                    retry_after=hint,
                )
            if delay is None:
                delay = o.retry.initial * (2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            delay = min(delay, o.retry.max)
            self._log(
                "warning",
                "http_portal.retry",
                url=self._display(url),
                problem=problem,
                attempt=attempt,
                wait_s=round(delay, 3),
            )
            self._wait(delay)

    def _get_json(self, url: str, params: dict[str, str] | None) -> tuple[Any, httpx.Response]:
        import httpx

        with self._response(url, params) as response:
            try:
                body = response.read()
            except httpx.TransportError as exc:
                raise TransientError(
                    f"{self._display(str(response.url))}: the response broke off: "
                    f"{type(exc).__name__}"
                ) from None
            where = self._display(str(response.url))
            try:
                return json.loads(body), response
            except UnicodeDecodeError:
                raise ConnectorError(f"{where}: the response is not UTF-8 JSON") from None
            except json.JSONDecodeError as exc:
                raise ConnectorError(
                    f"{where}: malformed JSON at line {exc.lineno} column {exc.colno} "
                    f"(character {exc.pos}): {exc.msg}"
                ) from None

    # -- listing ----------------------------------------------------------------

    def _items(self, body: Any, where: str) -> list[Any]:
        path = self.options.items_field
        items = body if path is None else get_path(body, path)
        if items is _MISSING:
            raise ConnectorError(f"{where}: the response has no {path!r} (items_field)")
        if not isinstance(items, list):
            raise ConnectorError(
                f"{where}: expected a list of items at {path or 'the top level'}, "
                f"got {type(items).__name__}"
            )
        return items

    def _pages(self, params: dict[str, str]) -> Generator[tuple[list[Any], str], None, None]:
        o, p = self.options, self.options.pagination
        url = self._url(o.list_path)
        query = dict(params)
        if p.size_param and p.page_size:
            query[p.size_param] = str(p.page_size)
        page = p.first_page
        seen: set[str] = set()
        for _ in range(p.max_pages):
            if p.style == "page":
                query[p.page_param] = str(page)
            body, response = self._get_json(url, query)
            page_url = str(response.url)
            where = self._display(page_url)
            items = self._items(body, where)
            yield items, page_url
            if p.style == "none":
                return
            if p.style == "page":
                if not items or (p.page_size is not None and len(items) < p.page_size):
                    return
                page += 1
            elif p.style == "cursor":
                assert p.cursor_field is not None
                nxt = get_path(body, p.cursor_field)
                if nxt is _MISSING or nxt in (None, "") or not items:
                    return
                token = str(nxt)
                if token in seen:
                    raise ConnectorError(f"{where}: the portal repeated cursor; stopping")
                seen.add(token)
                query[p.cursor_param] = token
            else:  # link
                nxt_url = response.links.get("next", {}).get("url")
                if not nxt_url:
                    return
                url = urljoin(str(response.url), nxt_url)
                if url in seen:
                    raise ConnectorError(f"{where}: the Link header repeats {self._display(url)}")
                seen.add(url)
                query = {}  # the next link carries its own query
        raise ConnectorError(
            f"{self._display(url)}: more than {p.max_pages} pages (pagination.max_pages)"
        )

    def check(self) -> None:
        """Fetch the first page of the list and check its shape."""
        try:
            pages = self._pages(dict(self.options.list_params))
            next(pages, None)
            pages.close()
        finally:
            self.close()

    # -- fetch ------------------------------------------------------------------

    def _load_cursor(self, cursor: str | None) -> str | None:
        if not cursor:
            return None
        try:
            data = json.loads(cursor)
            if data.get("v") != _CURSOR_VERSION:
                raise ValueError("version")
            since = data.get("since")
            return None if since is None else str(since)
        except (ValueError, AttributeError, TypeError):
            self._log("warning", "http_portal.cursor_reset", reason="unreadable cursor")
            return None

    def fetch(self, cursor: str | None) -> FetchResult:
        """Yield the portal's documents (since the cursor); return the new cursor."""
        o = self.options
        since = self._load_cursor(cursor)
        params = dict(o.list_params)
        if o.since_param and since is not None:
            params[o.since_param] = since
        newest = since
        tmp_dir = Path(self.context.state_dir) / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        try:
            for items, page_url in self._pages(params):
                for index, item in enumerate(items):
                    if self.context.stop.is_set():
                        raise TransientError(f"{self.id}: stopping")
                    try:
                        result = self._document(item, index, page_url, tmp_dir)
                    except ConnectorError:
                        raise  # the portal or the network: the run's problem
                    except Exception as exc:
                        # Anything else (a bug, a library's surprise) is this
                        # item's failure, never the end of the run.
                        result = self._unexpected(item, index, page_url, exc)
                    try:
                        yield result
                    finally:
                        if isinstance(result, SourceDocument) and isinstance(result.content, Path):
                            result.content.unlink(missing_ok=True)
                    if o.since_field and isinstance(item, dict):
                        value = get_path(item, o.since_field)
                        if value is not _MISSING and value is not None:
                            newest = _later(newest, str(value))
        finally:
            self.close()
        return json.dumps({"v": _CURSOR_VERSION, "since": newest})

    def _unexpected(self, item: Any, index: int, page_url: str, exc: Exception) -> SkippedDocument:
        where = self._display(page_url)
        raw_id = get_path(item, self.options.id_field) if isinstance(item, dict) else None
        item_id = clean_text(str(raw_id), 200) if isinstance(raw_id, str | int) else ""
        message = clean_text(self._scrub(str(exc)), 300)
        return SkippedDocument(
            external_id=item_id or f"{where}#{index}",
            reason=(
                f"item {item_id or index!r}: unexpected error: {type(exc).__name__}: {message}"
            ),
        )

    def _document(
        self, item: Any, index: int, page_url: str, tmp_dir: Path
    ) -> SourceDocument | SkippedDocument:
        o = self.options
        where = self._display(page_url)
        if not isinstance(item, dict):
            return SkippedDocument(
                external_id=f"{where}#{index}",
                reason=f"{where}: item {index} is not a JSON object",
            )
        raw_id = get_path(item, o.id_field)
        if raw_id is _MISSING or raw_id is None or not isinstance(raw_id, str | int):
            return SkippedDocument(
                external_id=f"{where}#{index}",
                reason=f"{where}: item {index} has no usable id at {o.id_field!r}",
            )
        item_id = clean_text(str(raw_id), 200)
        if not item_id:
            return SkippedDocument(external_id=f"{where}#{index}", reason="empty item id")
        try:
            metadata = self._metadata(item)
        except _MappingError as exc:
            return SkippedDocument(
                external_id=item_id, reason=f"item {item_id!r}: field {exc.field}: {exc.message}"
            )
        if o.download_path is not None:
            url = self._url(o.download_path.replace("{id}", quote(str(raw_id), safe="")))
        else:
            assert o.download_url_field is not None
            link = get_path(item, o.download_url_field)
            if not isinstance(link, str) or not link:
                return SkippedDocument(
                    external_id=item_id,
                    reason=f"item {item_id!r}: no download URL at {o.download_url_field!r}",
                )
            # A URL from the portal: resolved like a browser would, against
            # the page it came from.
            url = urljoin(page_url, link)
        try:
            download = self._download(url, tmp_dir)
        except ConnectorError as exc:
            if isinstance(exc, TransientError):
                raise
            return SkippedDocument(
                external_id=item_id, reason=f"item {item_id!r}: download failed: {exc}"
            )
        mapped_name = get_path(item, o.mapping.filename) if o.mapping.filename else _MISSING
        raw_name = mapped_name if isinstance(mapped_name, str) else download.filename
        filename = safe_filename(raw_name or f"{item_id}", item_id, download.media_type)
        if "." not in filename and download.media_type:
            filename += mimetypes.guess_extension(download.media_type) or ""
        return SourceDocument(
            external_id=item_id,
            filename=filename,
            content=download.content,
            media_type=download.media_type,
            metadata=metadata,
        )

    def _download(self, url: str, tmp_dir: Path) -> _Download:
        o = self.options
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._download_once(url, tmp_dir)
            except _BrokenDownload as exc:
                if attempt >= o.retry.attempts:
                    raise TransientError(
                        f"{exc.where}: the download broke off ({exc.problem}); "
                        f"gave up after {attempt} attempts"
                    ) from None
                delay = min(o.retry.initial * (2 ** (attempt - 1)), o.retry.max)
                self._log(
                    "warning",
                    "http_portal.retry",
                    url=exc.where,
                    problem=exc.problem,
                    attempt=attempt,
                    wait_s=delay,
                )
                self._wait(delay)

    def _download_once(self, url: str, tmp_dir: Path) -> _Download:
        """One download into a temporary file; _BrokenDownload if it broke off."""
        import httpx

        with self._response(url) as response:
            where = self._display(str(response.url))
            expected = response.headers.get("content-length")
            media_type = (response.headers.get("content-type") or "").split(";")[0].strip()
            filename = _filename_from_disposition(response.headers.get("content-disposition"))
            fd, name = tempfile.mkstemp(prefix="download-", dir=tmp_dir)
            path = Path(name)
            size = 0
            try:
                with open(fd, "wb") as out:
                    for chunk in response.iter_bytes(64 * 1024):
                        if self.context.stop.is_set():
                            raise TransientError(f"{self.id}: stopping during a download")
                        out.write(chunk)
                        size += len(chunk)
                if expected is not None and expected.isdigit() and int(expected) != size:
                    raise _BrokenDownload(where, f"received {size} of {expected} bytes")
            except httpx.TransportError as exc:
                path.unlink(missing_ok=True)
                raise _BrokenDownload(
                    where, f"{type(exc).__name__}: {self._scrub(str(exc))}"
                ) from None
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        content: bytes | Path = path
        if size <= _SPOOL_THRESHOLD:
            content = path.read_bytes()
            path.unlink(missing_ok=True)
        return _Download(content, filename, media_type or None)

    # -- mapping ----------------------------------------------------------------

    def _metadata(self, item: dict[str, Any]) -> DocumentMetadata:
        m = self.options.mapping
        data: dict[str, Any] = {}

        def value(name: str, path: str) -> Any:
            del name  # kept for readability at the call sites
            found = get_path(item, path)
            return None if found is _MISSING else found

        for name in ("number", "note", "currency"):
            path = getattr(m, name)
            if path:
                v = value(name, path)
                if v is not None:
                    if not isinstance(v, str | int):
                        raise _MappingError(f"{name} ({path})", f"expected text, got {v!r}")
                    data[name] = str(v)
        for name in ("document_date", "due_date"):
            path = getattr(m, name)
            if path:
                v = value(name, path)
                if v is not None:
                    data[name] = _parse_date(v, f"{name} ({path})")
        for name in ("net_amount", "gross_amount"):
            path = getattr(m, name)
            if path:
                v = value(name, path)
                if v is not None:
                    if isinstance(v, bool) or not isinstance(v, str | int | float):
                        raise _MappingError(f"{name} ({path})", f"expected an amount, got {v!r}")
                    data[name] = v
        if m.approved:
            v = value("approved", m.approved)
            if v is not None:
                if not isinstance(v, bool):
                    raise _MappingError(
                        f"approved ({m.approved})", f"expected true/false, got {v!r}"
                    )
                data["approved"] = v
        if m.tags:
            v = value("tags", m.tags)
            if v is not None:
                if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
                    raise _MappingError(
                        f"tags ({m.tags})", f"expected a list of strings, got {v!r}"
                    )
                data["tags"] = v
        for name in ("type", "company", "payment_status"):
            spec = getattr(m, name)
            if spec is None:
                continue
            if isinstance(spec, ValueMap):
                v = value(name, spec.field)
                if v is None:
                    if spec.default is not None:
                        data[name] = spec.default
                    continue
                key = str(v)
                if key in spec.map:
                    data[name] = spec.map[key]
                elif spec.default is not None:
                    data[name] = spec.default
                else:
                    raise _MappingError(
                        f"{name} ({spec.field})",
                        f"{key!r} is not in the mapping ({', '.join(sorted(spec.map)) or 'empty'})",
                    )
            else:
                v = value(name, spec)
                if v is not None:
                    data[name] = str(v)
        if "company" not in data and self.options.company:
            data["company"] = self.options.company
        fields: dict[str, str] = {}
        for key, path in m.fields.items():
            v = value(key, path)
            if v is None:
                continue
            if isinstance(v, dict | list):
                raise _MappingError(f"fields.{key} ({path})", "expected a single value")
            fields[key] = str(v).lower() if isinstance(v, bool) else str(v)
        if fields:
            data["fields"] = fields
        try:
            return DocumentMetadata.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "?"
            path = _mapped_path(m, field.split(".")[0])
            raise _MappingError(
                f"{field} ({path})" if path else field,
                self._scrub(str(err["msg"]).removeprefix("Value error, ")),
            ) from None


class _BrokenDownload(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


class _MappingError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = clean_text(message, 300)


def _mapped_path(m: FieldMapping, name: str) -> str | None:
    spec = getattr(m, name, None)
    if isinstance(spec, ValueMap):
        return spec.field
    return spec if isinstance(spec, str) else None


def _parse_date(value: Any, field: str) -> date:
    if isinstance(value, str):
        text = value.strip()
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            pass
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        # Unix timestamps (seconds, or milliseconds when huge).
        seconds = value / 1000 if value > 1e11 else value
        with contextlib.suppress(OverflowError, OSError, ValueError):
            return datetime.fromtimestamp(seconds, UTC).date()
    raise _MappingError(field, f"expected a date such as 2026-03-31, got {value!r}")
