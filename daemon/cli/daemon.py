"""The long-running commands: ``run`` (the daemon), ``worker`` (a queue node) and
``serve`` (the status page alone).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from . import main
from .common import fail
from .context import AppContext


@main.command()
@click.option(
    "--no-work",
    is_flag=True,
    help="With executor: procrastinate: only schedule (defer jobs to the queue); "
    "`invoicesync worker` nodes run them.",
)
@click.pass_obj
def run(app: AppContext, no_work: bool) -> None:
    """Run as a daemon in the foreground: import and export on each schedule.

    This is what systemd starts (see packaging/systemd/invoicesync.service).
    Every source and export account with a `schedule:` gets a job; accounts
    with `after_import: true` export after each import. Logs (JSON lines
    when not on a terminal) go to stderr.

    With `executor: procrastinate` the jobs go through a queue in the
    PostgreSQL database instead: of all nodes running `run`, one at a time
    defers the scheduled jobs, and every `run` (unless --no-work) and
    `worker` node works them off (docs/scaling.md).

    Signals: SIGHUP reloads the configuration (an invalid file is logged as
    config.invalid and the running one stays); SIGTERM or Ctrl-C finish the
    document in hand and exit within `daemon.grace_period`.
    """
    _daemon(app, "schedule" if no_work else "run")


@main.command()
@click.pass_obj
def worker(app: AppContext) -> None:
    """Run a node that only works: it takes import and export jobs from the queue.

    Needs `executor: procrastinate` and a PostgreSQL `database:`; start as
    many as you like on any machines that reach the database and the blob
    store (`blobs:`). Each runs `daemon.workers` jobs at a time. Jobs of a
    worker that died (no heartbeat for `daemon.stalled_after`) are queued
    again and finished by the others. Signals as for `run`.
    """
    _daemon(app, "work")


def _daemon(app: AppContext, role: str) -> None:
    from invoicesync.daemon.scheduler.service import Daemon, LogOverrides

    endpoint_factory: Callable[[Any], Any] | None = None
    if app.loaded.config.daemon.http is not None:
        # Only then: the web stack is an extra, and --version must not pay for it.
        from invoicesync.daemon.web.endpoint import daemon_endpoint

        endpoint_factory = daemon_endpoint
    daemon = Daemon(
        app.loaded,
        app.registry,
        app.clock,
        log_overrides=LogOverrides(app.log_format, app.log_level),
        endpoint_factory=endpoint_factory,
        role=role,
    )
    sys.exit(daemon.run())


@main.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to listen. Default: daemon.http.listen, else 127.0.0.1:8080.",
)
@click.pass_obj
def serve(app: AppContext, listen: str | None) -> None:
    """Serve the status page, /metrics and /healthz for the state folder, without the scheduler.

    For looking at a state folder while no daemon runs (or beside one that runs
    without `daemon: http:`): nothing is imported or exported, and /healthz
    answers 503 because no scheduler runs. Access control comes from
    `daemon.http.auth`; without it only a loopback address is allowed.
    Needs the `web` extra (pip install 'invoicesync[web]'). Ctrl-C or SIGTERM stops.
    """
    import signal as signals

    from invoicesync.daemon.config.models import (
        HttpConfig,
        is_loopback,
        missing_web_modules,
        parse_listen,
    )

    missing = missing_web_modules()
    if missing:
        fail(
            f"`serve` needs the 'web' extra ({', '.join(missing)} not installed): "
            "pip install 'invoicesync[web]'"
        )
    from invoicesync.daemon.logging import get_logger
    from invoicesync.daemon.scheduler.signals import SignalInbox
    from invoicesync.daemon.web.endpoint import Endpoint, ListenError
    from invoicesync.daemon.web.host import WebHost

    loaded = app.loaded
    http = loaded.config.daemon.http or HttpConfig()
    address = http.address
    if listen is not None:
        try:
            address = parse_listen(listen)
        except ValueError as exc:
            fail(f"--listen: {exc}")
        if loaded.http_auth is None and not is_loopback(address[0]):
            fail(
                f"--listen: {address[0]} is not a loopback address; without daemon.http.auth "
                "(bearer or basic) the page listens on 127.0.0.1, ::1 or localhost only"
            )
    with app.runtime(read_only=True) as rt:
        host = WebHost(lambda: rt, mode="serve")
        try:
            endpoint = Endpoint(host, http, loaded.http_auth, listen=address)
        except ListenError as exc:
            fail(str(exc.strerror))
        inbox = SignalInbox((signals.SIGTERM, signals.SIGINT))
        inbox.install()
        endpoint.start()
        auth = loaded.http_auth
        get_logger().info(
            "http.started",
            listen=endpoint.listen,
            mode="serve",
            auth=next(iter(auth)) if auth else None,
        )
        click.echo(f"serving http://{endpoint.listen}/ (Ctrl-C stops)")
        signum = inbox.next()
        endpoint.stop()
        inbox.restore()
        get_logger().info("http.stopped", mode="serve", signal=signum.name)
