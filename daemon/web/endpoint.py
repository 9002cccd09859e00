"""The HTTP endpoint as one piece: metrics, application and server together.

The daemon and ``invoicesync serve`` both build an :class:`Endpoint` from
``daemon.http`` (and the resolved ``auth``), start it, feed it finished runs,
and stop it.
"""

from __future__ import annotations

from typing import Any

from invoicesync.daemon.config.models import HttpConfig
from invoicesync.daemon.logging import add_log_tap, remove_log_tap

from .app import build_app
from .host import RunEvents, WebHost
from .metrics import Metrics
from .server import HttpServer, ListenError

__all__ = ["Endpoint", "ListenError", "daemon_endpoint"]


class Endpoint:
    """Status page, ``/metrics`` and ``/healthz`` for ``host``, listening on ``http.listen``."""

    def __init__(
        self,
        host: WebHost,
        http: HttpConfig,
        auth: dict[str, Any] | None,
        listen: tuple[str, int] | None = None,
    ) -> None:
        self.host = host
        self.metrics = Metrics(host)
        self.app = build_app(host, self.metrics, auth=auth, runs_shown=http.runs_shown)
        address, port = listen or http.address
        self.server = HttpServer(self.app, address, port)  # binds now: errors surface here

    @property
    def listen(self) -> str:
        host = f"[{self.server.host}]" if ":" in self.server.host else self.server.host
        return f"{host}:{self.server.port}"

    def start(self) -> None:
        if self.host.events is not None:
            add_log_tap(self.host.events)
        self.server.start()
        self.host.refresh_counts()  # so the first look at the page has them

    def run_finished(self, kind: str, subject: str, summary: Any) -> None:
        self.metrics.run_finished(kind, subject, summary)
        self.host.invalidate()

    def reconfigured(self) -> None:
        """After a reload: new and removed ids, fresh counts."""
        self.metrics.configure()
        self.host.invalidate()

    def stop(self, timeout: float = 5.0) -> bool:
        if self.host.events is not None:
            remove_log_tap(self.host.events)
        return self.server.stop(timeout)


def daemon_endpoint(daemon: Any) -> Endpoint:
    """The endpoint of ``invoicesync run`` (``daemon``: the scheduler's ``Daemon``).

    Binds the socket now (:class:`ListenError` if it cannot); serves once
    :meth:`Endpoint.start` is called. Keeps the runs' log events for /runs.
    """
    host = WebHost(
        lambda: daemon.runtime,
        scheduler_running=daemon.scheduler_running,
        started_at=daemon.started_at,
        mode="daemon",
        events=RunEvents(),
        next_runs=daemon.next_runs,
    )
    host.limits = daemon.stale_limits  # one stale_after computation per configuration
    http = daemon.runtime.config.daemon.http
    return Endpoint(host, http, daemon.loaded.http_auth)
