"""The Starlette application: the status pages, ``/metrics`` and ``/healthz``.

Read-only (GET and HEAD only), server-rendered, no JavaScript. Templates are
autoescaped (catalog data is never markup), every HTML response passes the
secret redactor as a last line of defence, and a strict
``Content-Security-Policy`` allows nothing but the page's own stylesheet.
Bad parameters are answered with 400, unknown accounts, documents and runs
with 404.

Routes are sync functions: Starlette runs them on its thread pool, where
the SQLAlchemy calls belong.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from invoicesync.daemon import __version__
from invoicesync.daemon.engine.provenance import field_lines
from invoicesync.daemon.status import explain
from invoicesync.daemon.storage.schema import document_revisions
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .host import WebHost
from .metrics import Metrics
from .queries import STATES, DocumentFilter, account_documents

__all__ = ["build_app"]

PAGE_SIZE = 50
_MAX_PARAM = 600  # a document id is at most 600 characters
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}
#: The classic text format every Prometheus (2.x and 3.x) reads; the newer
#: 1.0.0 label only matters for non-ASCII metric names, which we have none of.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("invoicesync.daemon.web", "templates"),
        autoescape=True,  # every value is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


class _Access:
    """Optional bearer or basic authentication (``daemon.http.auth``), as ASGI middleware.

    ``/healthz`` stays open: load balancers and orchestrators probe it
    without credentials, and it tells nothing but "up".
    """

    def __init__(self, app: ASGIApp, auth: dict[str, Any] | None) -> None:
        self.app = app
        self.expected: list[bytes] = []
        self.challenge = ""
        if auth and auth.get("bearer"):
            self.expected = [f"Bearer {auth['bearer']}".encode()]
            self.challenge = 'Bearer realm="invoicesync"'
        elif auth and auth.get("basic"):
            basic = auth["basic"]
            pair = f"{basic['username']}:{basic['password']}".encode()
            self.expected = [b"Basic " + base64.b64encode(pair)]
            self.basic_pair = pair
            self.challenge = 'Basic realm="invoicesync", charset="UTF-8"'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.expected or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not self._valid(given):
            response = PlainTextResponse(
                "authentication required\n",
                status_code=401,
                headers={"www-authenticate": self.challenge, **_SECURITY_HEADERS},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _valid(self, given: bytes) -> bool:
        if given.startswith(b"Basic ") and hasattr(self, "basic_pair"):
            # Compare the decoded pair: clients differ in base64 padding details.
            try:
                decoded = base64.b64decode(given[6:].strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(decoded, self.basic_pair)
        return any(hmac.compare_digest(given.strip(), e) for e in self.expected)


class _Pages:
    """The route handlers (sync: Starlette runs them on its thread pool)."""

    def __init__(self, host: WebHost, metrics: Metrics, runs_shown: int) -> None:
        self.host = host
        self.metrics = metrics
        self.runs_shown = runs_shown
        self.env = _environment()
        self.env.filters["when"] = self._when
        self.env.filters["duration"] = _duration
        self.env.globals["query"] = _query
        self.env.globals["version"] = __version__
        self.css = (resources.files("invoicesync.daemon.web") / "static" / "style.css").read_text(
            encoding="utf-8"
        )

    # -- helpers -------------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        tz: ZoneInfo = self.host.runtime.config.tz
        return tz

    def _when(self, moment: datetime | None, seconds: bool = False) -> str:
        if moment is None:
            return "never"
        fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
        return moment.astimezone(self.tz).strftime(fmt)

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            mode=self.host.mode,
            scheduler_running=self.host.scheduler_running(),
            timezone=str(self.tz),
            **context,
        )
        # Defence in depth: no page may carry a secret value, whatever slipped
        # into the catalog or an error text.
        html = self.host.redactor.redact(html)
        return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)

    def _params(self, request: Request, allowed: set[str]) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            if key not in allowed:
                raise HTTPException(400, f"unknown parameter {key!r}")
            if key in params:
                raise HTTPException(400, f"parameter {key!r} given twice")
            if len(value) > _MAX_PARAM or any(ord(c) < 32 for c in value):
                raise HTTPException(400, f"invalid value for {key!r}")
            params[key] = value
        return params

    # -- pages -----------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        self._params(request, set())
        host = self.host
        rt = host.runtime
        cfg = rt.config
        per_source = host.source_documents()
        sources = []
        for source in cfg.sources:
            last = rt.runs.last("import", source.id)
            sources.append(
                {
                    "id": source.id,
                    "type": source.type,
                    "last": last,
                    "documents": per_source.get(source.id, 0),
                    "next_run": host.next_run("source", source),
                    "stale": host.staleness("source", source),
                }
            )
        accounts = []
        for account in cfg.exports:
            accounts.append(
                {
                    "id": account.id,
                    "type": account.type,
                    "counts": host.account_counts(account),
                    "last": rt.runs.last("export", account.id),
                    "next_run": host.next_run("account", account),
                    "stale": host.staleness("account", account),
                }
            )
        return self.render("overview.html", title="Overview", sources=sources, accounts=accounts)

    def account(self, request: Request) -> Response:
        rt = self.host.runtime
        account_id = request.path_params["account"]
        account = next((a for a in rt.config.exports if a.id == account_id), None)
        if account is None:
            raise HTTPException(404, "no such export account")
        params = self._params(request, {"status", "source", "company", "from", "to", "after"})
        state = params.get("status") or None
        if state is not None and state not in STATES:
            raise HTTPException(400, f"status must be one of {', '.join(STATES)}")
        source = params.get("source") or None
        source_ids = [s.id for s in rt.config.sources]
        if source is not None and source not in source_ids:
            raise HTTPException(400, "unknown source")
        company = params.get("company") or None
        if company is not None and not _ID.match(company):
            raise HTTPException(400, "invalid company id")
        flt = DocumentFilter(
            state=state,
            source=source,
            company=company,
            date_from=_date(params.get("from")),
            date_to=_date(params.get("to")),
            after=params.get("after") or None,
        )
        page = account_documents(rt, account, flt, rt.clock.now(), limit=PAGE_SIZE)
        current = {k: v for k, v in params.items() if k != "after" and v}
        companies = sorted({c.id for c in rt.config.companies} | ({company} if company else set()))
        return self.render(
            "account.html",
            title=f"Account {account.id}",
            account=account,
            counts=self.host.account_counts(account),
            page=page,
            flt=flt,
            current=current,
            states=STATES,
            sources=source_ids,
            companies=companies,
            stale=self.host.staleness("account", account),
            next_run=self.host.next_run("account", account),
        )

    def document(self, request: Request) -> Response:
        rt = self.host.runtime
        doc_id = request.path_params["document"]
        params = self._params(request, {"account"})
        if len(doc_id) > _MAX_PARAM:
            raise HTTPException(404, "no such document")
        doc = rt.catalog.get(doc_id)
        if doc is None:
            raise HTTPException(404, "no such document")
        accounts = list(rt.config.exports)
        first = params.get("account")
        if first is not None:
            if first not in {a.id for a in accounts}:
                raise HTTPException(400, "unknown account")
            accounts.sort(key=lambda a: a.id != first)
        explanations = [explain(rt, a.id, doc) for a in accounts]
        with rt.engine.connect() as conn:
            revisions = conn.execute(
                document_revisions.select()
                .where(document_revisions.c.document_id == doc.id)
                .order_by(document_revisions.c.revision.desc())
            ).all()
        dumped = doc.model_dump(mode="json")
        # Identity first, then what the document says, then its content facts.
        order = ["id", "source", "external_id", "import_date"]
        fields = {k: dumped[k] for k in order} | {k: v for k, v in dumped.items() if k not in order}
        provenance = _provenance(doc)
        return self.render(
            "document.html",
            title=f"Document {doc.id}",
            doc=doc,
            fields=fields,
            provenance=provenance,
            field_origins=field_lines(doc),
            revisions=revisions,
            explanations=explanations,
            selected=first,
        )

    def runs(self, request: Request) -> Response:
        rt = self.host.runtime
        params = self._params(request, {"kind", "subject"})
        kind = params.get("kind") or None
        if kind is not None and kind not in ("import", "export"):
            raise HTTPException(400, "kind must be import or export")
        subject = params.get("subject") or None
        if subject is not None and not _ID.match(subject):
            raise HTTPException(400, "invalid source or account id")
        records = rt.runs.recent(self.runs_shown, kind=kind, subject=subject)
        events = self.host.events
        rows = [
            {"run": r, "events": events.get(r.id) if events is not None else None} for r in records
        ]
        return self.render(
            "runs.html",
            title="Runs",
            rows=rows,
            kind=kind,
            subject=subject,
            keeps_events=events is not None,
            runs_shown=self.runs_shown,
        )

    def stylesheet(self, request: Request) -> Response:
        return Response(
            self.css,
            media_type="text/css",
            headers={**_SECURITY_HEADERS, "cache-control": "max-age=3600"},
        )

    def metrics_endpoint(self, request: Request) -> Response:
        self._params(request, set())
        return Response(
            generate_latest(self.metrics.registry),
            media_type=METRICS_CONTENT_TYPE,
            headers={"cache-control": "no-store"},
        )

    def healthz(self, request: Request) -> Response:
        if self.host.scheduler_running():
            return PlainTextResponse("ok\n", headers={"cache-control": "no-store"})
        reason = (
            "no scheduler: this is `invoicesync serve`\n"
            if self.host.mode == "serve"
            else "the scheduler is not running\n"
        )
        return PlainTextResponse(reason, status_code=503, headers={"cache-control": "no-store"})


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, "dates are YYYY-MM-DD") from None


def _duration(run: Any) -> str:
    if run.finished_at is None:
        return "running"
    return f"{(run.finished_at - run.started_at).total_seconds():.1f} s"


def _query(base: dict[str, str], **changes: str | None) -> str:
    """``?a=1&b=2`` from ``base`` with ``changes`` applied (None removes a key)."""
    merged = {**base, **changes}
    clean = {k: v for k, v in merged.items() if v}
    return "?" + urlencode(clean) if clean else "?"


def _provenance(doc: Any) -> dict[str, str]:
    """Where each field came from, when an extractor set it (else: the source)."""
    return {str(k): str(v) for k, v in doc.provenance.items()}


def build_app(
    host: WebHost, metrics: Metrics, *, auth: dict[str, Any] | None, runs_shown: int
) -> ASGIApp:
    """The endpoint's ASGI application."""
    pages = _Pages(host, metrics, runs_shown)
    methods = ["GET", "HEAD"]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return PlainTextResponse(
                "read-only: GET only\n",
                status_code=405,
                headers={"allow": "GET, HEAD", **_SECURITY_HEADERS},
            )
        try:
            return pages.render(
                "error.html",
                status_code=exc.status_code,
                title=f"{exc.status_code}",
                status=exc.status_code,
                detail=exc.detail,
            )
        except Exception:  # the error page must not fail in turn
            return PlainTextResponse(
                f"{exc.status_code} {exc.detail}\n", status_code=exc.status_code
            )

    async def server_error(request: Request, exc: Exception) -> Response:
        from invoicesync.daemon.logging import get_logger

        get_logger().error(
            "http.error", path=request.url.path, error=f"{type(exc).__name__}: {exc}"
        )
        return PlainTextResponse("internal error; see the daemon's log\n", status_code=500)

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        Exception: server_error,
    }
    app = Starlette(
        routes=[
            Route("/", pages.overview, methods=methods),
            Route("/accounts/{account}", pages.account, methods=methods),
            Route("/documents/{document:path}", pages.document, methods=methods),
            Route("/runs", pages.runs, methods=methods),
            Route("/style.css", pages.stylesheet, methods=methods),
            Route("/metrics", pages.metrics_endpoint, methods=methods),
            Route("/healthz", pages.healthz, methods=methods),
        ],
        exception_handlers=handlers,
    )
    return _Access(app, auth)
