"""The daemon: a scheduler with one job per source and per export account.

Threads:

- the **main thread** waits for signals (:class:`SignalInbox`) and does
  reloads and the shutdown;
- APScheduler's **scheduler thread** sleeps until the next fire time and
  hands due jobs to a bounded **worker pool** (``daemon.workers`` threads);
- a one-thread **watchdog** executor pings systemd from the scheduler's own
  loop: if the scheduler thread hangs, the pings stop and systemd restarts us.

Jobs: ``import:SOURCE`` and ``export:ACCOUNT`` for every ``every``/``cron``
schedule; accounts with ``after_import: true`` are started by each import
(see :mod:`.jobs`). Sources in watch mode also get a watcher thread that
starts their import when their folder changes (see :mod:`.watch`), and one
more import when the last one left files that were still being written
(``stable_for``). ``every`` jobs run once right after the start (spread by
the jitter), ``cron`` jobs wait for their time. A job never overlaps itself
and missed runs coalesce into one (``coalesce=True``, ``max_instances=1``,
no misfire limit: a run that is late because all workers were busy still
runs, once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from invoicesync.daemon import __version__
from invoicesync.daemon.config.loader import ConfigError, LoadedConfig, load_config
from invoicesync.daemon.config.models import Executor, ScheduleConfig
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.failures import describe_error
from invoicesync.daemon.engine.locks import LockWait
from invoicesync.daemon.engine.runtime import Runtime, open_runtime
from invoicesync.daemon.logging import configure_logging, get_logger, register_secrets
from invoicesync.daemon.plugin_host import PluginRegistry
from invoicesync.daemon.storage.schema_guard import StateError
from invoicesync.plugins.connectors import Source, WatchSpec
from invoicesync.plugins.errors import ConfigurationError

from .jobs import Jobs, export_job_id, import_job_id
from .nextruns import remove_schedule, write_schedule
from .queue import JobQueue, Leadership, QueueWorker, ensure_queue_schema
from .signals import SignalInbox
from .stale import StaleLimits, StaleMonitor
from .systemd import Notifier, watchdog_interval
from .triggers import build_trigger
from .watch import SourceWatcher

__all__ = ["Daemon"]

WATCHDOG_JOB = "systemd-watchdog"
STALE_JOB = "stale-check"
#: How often stale sources and accounts are looked for (also after every run).
STALE_CHECK_SECONDS = 60


def refetch_job_id(source_id: str) -> str:
    return f"refetch:{source_id}"


@dataclass(frozen=True)
class _JobSpec:
    """A scheduled job as the configuration asks for it; equal specs need no change."""

    job_id: str
    kind: str
    subject: str
    schedule: str  # the schedule as JSON, for comparison
    jitter: float
    timezone: str
    config: ScheduleConfig = field(compare=False)


@dataclass
class LogOverrides:
    """``--log-format``/``--log-level`` given on the command line win over the file."""

    format: str | None = None
    level: str | None = None


class Daemon:
    """``invoicesync run``: build the scheduler, run until told to stop."""

    def __init__(
        self,
        loaded: LoadedConfig,
        registry: PluginRegistry,
        clock: Clock,
        *,
        notifier: Notifier | None = None,
        inbox: SignalInbox | None = None,
        log_overrides: LogOverrides | None = None,
        endpoint_factory: Callable[[Daemon], Any] | None = None,
        role: str = "run",
    ) -> None:
        """``role``: ``run`` (schedule and work), ``schedule`` (only defer jobs:
        ``run --no-work``) or ``work`` (``invoicesync worker``: only run queued
        jobs); the last two need ``executor: procrastinate``."""
        self.loaded = loaded
        self.role = role
        self._queue: JobQueue | None = None
        self._leader: Leadership | None = None
        self._worker: QueueWorker | None = None
        self.registry = registry
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.inbox = inbox or SignalInbox()
        self.log_overrides = log_overrides or LogOverrides()
        self.stop = threading.Event()
        self.jobs = Jobs(self)
        self.log = get_logger()
        self._rt: Runtime | None = None
        self._retired: list[Runtime] = []
        self._specs: dict[str, _JobSpec] = {}
        self._watchers: dict[str, SourceWatcher] = {}
        self._scheduler: BackgroundScheduler | None = None
        self._publish_lock = threading.Lock()
        self._started = time.monotonic()
        self._last_summary = "no run yet"
        self.started_at = clock.now()
        self.stale = StaleMonitor()
        self.stale_limits = StaleLimits()
        #: Builds the HTTP endpoint (``daemon.http``) for this daemon: an
        #: object with start(), stop(timeout), run_finished(kind, subject,
        #: summary), reconfigured() and ``listen``.
        self.endpoint_factory = endpoint_factory
        self.endpoint: Any = None

    # -- JobHost -------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        assert self._rt is not None, "the daemon is not running"
        return self._rt

    @property
    def scheduler(self) -> BackgroundScheduler:
        assert self._scheduler is not None, "the daemon is not running"
        return self._scheduler

    def submit(self, func: Callable[..., None], args: list[Any], name: str) -> None:
        if self.stop.is_set():
            return
        # A one-off job with its own id: max_instances counts per id, so a
        # shared id could drop a request while the previous one winds down.
        self.scheduler.add_job(func, args=args, name=name, misfire_grace_time=None)

    def run_finished(self, kind: str, subject: str, summary: Any) -> None:
        detail = summary.detail()
        result = summary.status
        if kind == "import":
            self._schedule_refetch(subject, getattr(summary, "refetch_after", None))
        at = self.clock.now().astimezone(self.runtime.config.tz)
        self._last_summary = f"last run: {kind} {subject} {result} ({detail}) at {at:%H:%M:%S}"
        self.notifier.status(self._status_line())
        self.publish_schedule()
        if self.endpoint is not None:
            self.endpoint.run_finished(kind, subject, summary)
        self.check_stale(("source" if kind == "import" else "account", subject))

    # -- the main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Start, serve signals until SIGTERM/SIGINT, stop; the process exit code."""
        _route_library_logs()
        self.inbox.install()
        try:
            self._rt = self._open_runtime(self.loaded)
        except StateError as exc:
            # Not the file's fault: a damaged, newer or lost state database.
            self.log.error("state.unusable", error=str(exc))
            self.inbox.restore()
            return 2
        except ConfigurationError as exc:
            self.log.error("config.invalid", file=str(self.loaded.path), problems=[str(exc)])
            self.inbox.restore()
            return 2
        config = self.runtime.config
        if config.executor is Executor.PROCRASTINATE:
            try:
                self._start_queue()
            except Exception as exc:  # the database refused: nothing can run
                self.log.error("queue.error", error=describe_error(exc))
                self._close_queue()
                self.inbox.restore()
                return 1
        elif self.role != "run":
            self.log.error(
                "config.invalid",
                file=str(self.loaded.path),
                problems=[
                    "`invoicesync worker` and `run --no-work` need `executor: procrastinate` "
                    "(docs/scaling.md)"
                ],
            )
            self.inbox.restore()
            return 2
        self.started_at = self.clock.now()
        if config.daemon.http is not None and not self._make_endpoint():
            self._close_queue()
            self.runtime.close()
            self.inbox.restore()
            return 2
        self._scheduler = BackgroundScheduler(
            timezone=config.tz,
            executors={
                "default": ThreadPoolExecutor(max_workers=config.daemon.workers),
                "watchdog": ThreadPoolExecutor(max_workers=1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.scheduler.add_listener(
            self._on_scheduler_event, EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED
        )
        self._sync_jobs(first=True)
        interval = watchdog_interval()
        if interval is not None and self.notifier.enabled:
            self.scheduler.add_job(
                self.notifier.watchdog,
                "interval",
                seconds=interval,
                id=WATCHDOG_JOB,
                name="systemd watchdog",
                executor="watchdog",
                next_run_time=datetime.now(config.tz),
            )
        self.scheduler.add_job(
            self._stale_job,
            "interval",
            seconds=STALE_CHECK_SECONDS,
            id=STALE_JOB,
            name="stale sources and accounts",
        )
        # Paused until READY=1 is out, so that systemd hears READY before any
        # job's STATUS or the first WATCHDOG ping.
        self.scheduler.start(paused=True)
        self.publish_schedule()
        self.check_stale()
        if self.endpoint is not None:
            self.endpoint.start()
        self.log.info(
            "daemon.started",
            version=__version__,
            pid=os.getpid(),
            config=str(self.loaded.path),
            sources=len(config.sources),
            accounts=len(config.exports),
            jobs=len(self._specs),
            workers=config.daemon.workers,
            watchdog_s=interval,
            executor=config.executor.value,
            role=self.role,
            http=self.endpoint.listen if self.endpoint is not None else None,
        )
        self.notifier.ready(self._status_line())
        self.scheduler.resume()
        self._sync_watchers()
        self._catch_up("start")
        signum = None
        while signum not in (signal.SIGTERM, signal.SIGINT):
            signum = self.inbox.next()
            if signum == signal.SIGHUP:
                self.reload()
        return self.shutdown(signal.Signals(signum).name if signum else "?")

    # -- the HTTP endpoint and stale detection ------------------------------------------

    def _make_endpoint(self) -> bool:
        """Bind the HTTP endpoint (served once the scheduler runs); False if it cannot.

        The endpoint comes from the factory the command line passes in: the
        web package sits above the scheduler (its pages use ``status``), so
        the scheduler never imports it.
        """
        if self.endpoint_factory is None:  # pragma: no cover - the CLI always passes one
            return True
        try:
            self.endpoint = self.endpoint_factory(self)
        except OSError as exc:  # the address is in use, or not this machine's
            self.log.error(
                "config.invalid",
                file=str(self.loaded.path),
                problems=[f"{self.loaded.path}: daemon.http.listen: {exc.strerror or exc}"],
            )
            return False
        return True

    def scheduler_running(self) -> bool:
        """What /healthz reports: the scheduler runs and no stop was asked for."""
        scheduler = self._scheduler
        return scheduler is not None and scheduler.running and not self.stop.is_set()

    def next_runs(self) -> dict[str, datetime | None] | None:
        """Each source's and account's job: its next fire time."""
        if self._scheduler is None:
            return None
        return {
            job.id: job.next_run_time for job in self.scheduler.get_jobs() if job.id in self._specs
        }

    def check_stale(self, only: tuple[str, str] | None = None) -> None:
        """Log ``*.stale``/``*.recovered`` for sources and accounts that changed."""
        rt = self.runtime
        cfg = rt.config
        entries: list[tuple[str, Any]] = [("source", s) for s in cfg.sources]
        entries += [("account", a) for a in cfg.exports]
        for kind, entry in entries:
            if only is not None and only != (kind, entry.id):
                continue
            state = self.stale_limits.staleness(rt, kind, entry, self.started_at)
            self.stale.check(state, rt.clock.now(), get_logger())

    def _stale_job(self) -> None:
        try:
            self.check_stale()
        except Exception as exc:  # e.g. the database is away: the next check retries
            self.log.error("job.error", job=STALE_JOB, error=f"{type(exc).__name__}: {exc}")

    def _status_line(self) -> str:
        cfg = self.runtime.config
        return f"{len(cfg.sources)} sources, {len(cfg.exports)} accounts; {self._last_summary}"

    # -- jobs ------------------------------------------------------------------------------

    # -- executor: procrastinate ------------------------------------------------------------

    def _start_queue(self) -> None:
        rt = self.runtime
        engine = rt.engine
        if ensure_queue_schema(engine):
            self.log.info("queue.schema_created")
        self._queue = JobQueue(engine)
        self.jobs.defer = self._defer
        if self.role != "work":
            self._leader = Leadership(engine)
        if self.role != "schedule":
            daemon = rt.config.daemon
            self._worker = QueueWorker(
                engine,
                self._run_queued,
                concurrency=daemon.workers,
                heartbeat=daemon.heartbeat.total_seconds(),
                stalled_after=daemon.stalled_after.total_seconds(),
                grace_period=daemon.grace_period.total_seconds(),
            )
            self._worker.start()

    def _defer(self, kind: str, subject: str, reason: str) -> bool:
        """Queue a run for whichever node is free (one waiting per job at most)."""
        assert self._queue is not None
        job = import_job_id(subject) if kind == "import" else export_job_id(subject)
        try:
            queued = self._queue.defer(kind, subject, reason)
        except Exception as exc:  # the database is away: the next tick or request retries
            self.log.error("job.error", job=job, error=describe_error(exc))
            return False
        self.log.info("job.deferred", job=job, reason=reason, queued=queued, leader=None)
        return queued

    def _tick(self, kind: str, subject: str) -> None:
        """A scheduled run with a queue: deferred by the scheduling node only."""
        if self.stop.is_set():
            return
        job = import_job_id(subject) if kind == "import" else export_job_id(subject)
        try:
            leader = self._leader is not None and self._leader.is_leader()
            if not leader:
                self.log.info(
                    "job.deferred", job=job, reason="schedule", queued=False, leader=False
                )
                return
            assert self._queue is not None
            queued = self._queue.defer(kind, subject, "schedule")
            self.log.info("job.deferred", job=job, reason="schedule", queued=queued, leader=True)
        except Exception as exc:  # the database is away: the next tick tries again
            self.log.error("job.error", job=job, error=describe_error(exc))

    def _run_queued(self, kind: str, subject: str, reason: str) -> None:
        """A job the queue handed to this node's worker."""
        if kind == "import":
            self.jobs.import_source(subject, reason)
        else:
            self.jobs.export_account(subject, reason)

    def _close_queue(self) -> None:
        if self._leader is not None:
            self._leader.close()
        if self._queue is not None:
            self._queue.close()

    def _desired(self, rt: Runtime) -> dict[str, _JobSpec]:
        cfg = rt.config
        if self.role == "work":
            return {}  # a worker node only runs what the queue hands it
        jitter = cfg.daemon.jitter.total_seconds()
        wanted: dict[str, _JobSpec] = {}
        entries: list[tuple[str, Any]] = [("import", s) for s in cfg.sources]
        entries += [("export", a) for a in cfg.exports]
        for kind, entry in entries:
            schedule = entry.schedule
            if schedule is None or schedule.after_import:
                continue
            job_id = import_job_id(entry.id) if kind == "import" else export_job_id(entry.id)
            wanted[job_id] = _JobSpec(
                job_id,
                kind,
                entry.id,
                schedule.model_dump_json(),
                jitter,
                cfg.timezone,
                schedule,
            )
        return wanted

    def _sync_jobs(self, first: bool = False) -> dict[str, list[str]]:
        """Make the scheduler's jobs match the configuration, in place."""
        rt = self.runtime
        wanted = self._desired(rt)
        changes: dict[str, list[str]] = {"added": [], "removed": [], "rescheduled": []}
        for job_id in sorted(set(self._specs) - set(wanted)):
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
            del self._specs[job_id]
            changes["removed"].append(job_id)
        now = datetime.now(rt.config.tz)
        jitter = rt.config.daemon.jitter
        for job_id, spec in wanted.items():
            old = self._specs.get(job_id)
            if old == spec:
                continue
            trigger = build_trigger(spec.config, rt.config.tz, jitter)
            if old is not None and self.scheduler.get_job(job_id) is not None:
                self.scheduler.reschedule_job(job_id, trigger=trigger)
                changes["rescheduled"].append(job_id)
            else:
                func: Callable[..., None] = (
                    self.jobs.import_source if spec.kind == "import" else self.jobs.export_account
                )
                args = [spec.subject]
                if self._queue is not None:
                    func, args = self._tick, [spec.kind, spec.subject]
                extra: dict[str, Any] = {}
                if spec.config.every is not None and spec.config.window is None:
                    # Interval jobs run once at the start, spread by the jitter.
                    spread = min(jitter.total_seconds(), spec.config.every.total_seconds() / 4)
                    extra["next_run_time"] = now + timedelta(seconds=random.uniform(0, spread))
                self.scheduler.add_job(
                    func,
                    trigger=trigger,
                    args=args,
                    id=job_id,
                    name=job_id,
                    replace_existing=True,
                    **extra,
                )
                changes["added"].append(job_id)
            self._specs[job_id] = spec
        return changes

    def _catch_up(self, reason: str) -> None:
        """Run every ``after_import`` account once now.

        Their runs are otherwise started only by imports that change
        something, so without this, work left over from before -- a document
        abandoned at the last shutdown, documents a reload's wider
        restrictions now admit -- would wait for the next new document.
        """
        if self.role == "work":
            return
        for account in self.runtime.config.exports:
            if account.schedule is not None and account.schedule.after_import:
                self.jobs.request_export(account.id, reason)

    # -- watch mode --------------------------------------------------------------------

    def _sync_watchers(self) -> None:
        """Start, restart or stop watcher threads to match the configuration."""
        rt = self.runtime
        wanted: dict[str, tuple[Any, WatchSpec | None]] = {}
        for source in rt.config.sources if self.role != "work" else []:
            # Options models compare by value: a reload that changes nothing
            # about this source keeps its watcher (and does not re-import).
            key = (source.type, rt.loaded.source_options[source.id])
            old = self._watchers.get(source.id)
            if old is not None and old.key == key:
                wanted[source.id] = (key, None)  # unchanged: keep it running
                continue
            spec = self._watch_spec(rt, source)
            if spec is not None:
                wanted[source.id] = (key, spec)
        for source_id in sorted(self._watchers):
            entry = wanted.get(source_id)
            if entry is None or entry[1] is not None:
                self._watchers.pop(source_id).stop("reload")
                self._remove_refetch(source_id)
        for source_id, (key, spec) in wanted.items():
            if spec is None:
                continue
            watcher = SourceWatcher(source_id, spec, self.jobs.request_import, key=key)
            self._watchers[source_id] = watcher
            watcher.start()

    def _watch_spec(self, rt: Runtime, source: Any) -> WatchSpec | None:
        """The source's WatchSpec, or None; only asked of types that can watch."""
        try:
            cls = self.registry.source_type(source.type)
            if getattr(cls, "watch_spec", None) is Source.watch_spec:
                return None  # the default: not a watchable source (no instance needed)
            instance = rt.make_source(source)
            try:
                return instance.watch_spec()
            finally:
                instance.close()
        except Exception as exc:  # a plugin bug must not stop the daemon
            get_logger(source=source.id).warning(
                "watch.error", error=f"{type(exc).__name__}: {exc}", retry_in_s=None
            )
            return None

    def _schedule_refetch(self, source_id: str, after: float | None) -> None:
        """One more import of a watched source once its waiting files may be done."""
        if after is None or source_id not in self._watchers or self.stop.is_set():
            return
        run_at = datetime.now(self.runtime.config.tz) + timedelta(seconds=after)
        # One pending re-fetch per source (replace_existing): each import
        # that still finds a growing file moves it to the new moment.
        with contextlib.suppress(Exception):  # the scheduler may be shutting down
            self.scheduler.add_job(
                self._refetch,
                trigger="date",
                run_date=run_at,
                args=[source_id],
                id=refetch_job_id(source_id),
                name=refetch_job_id(source_id),
                replace_existing=True,
                misfire_grace_time=None,
            )

    def _refetch(self, source_id: str) -> None:
        if self.stop.is_set() or source_id not in self._watchers:
            return
        get_logger(source=source_id).info(
            "watch.triggered", reason="stable_for", changes=0, paths=[]
        )
        self.jobs.request_import(source_id, "watch: stable_for")

    def _remove_refetch(self, source_id: str) -> None:
        with contextlib.suppress(Exception):  # JobLookupError: none pending
            self.scheduler.remove_job(refetch_job_id(source_id))

    def _stop_watchers(self) -> None:
        for source_id in sorted(self._watchers):
            self._watchers.pop(source_id).stop("shutdown")

    def _on_scheduler_event(self, event: JobEvent) -> None:
        job_id = event.job_id
        if event.code == EVENT_JOB_MAX_INSTANCES:
            self.log.info("job.skipped_busy", job=job_id)
        elif event.code == EVENT_JOB_MISSED:
            self.log.warning("job.missed", job=job_id)
        elif event.code == EVENT_JOB_ERROR:  # job bodies catch everything; belt and braces
            exc = getattr(event, "exception", None)
            self.log.error("job.error", job=job_id, error=f"{type(exc).__name__}: {exc}")

    def publish_schedule(self) -> None:
        """Write each job's next fire time for ``invoicesync status``."""
        if self._scheduler is None or self._rt is None:
            return
        jobs = self.next_runs() or {}
        with self._publish_lock:
            try:
                write_schedule(self.runtime.state_dir, jobs, datetime.now(self.runtime.config.tz))
            except OSError as exc:
                self.log.warning("daemon.schedule_not_written", error=str(exc))

    # -- reload ----------------------------------------------------------------------------

    def reload(self) -> bool:
        """SIGHUP: validate the file, then swap configuration and jobs in place.

        An invalid file is logged as ``config.invalid`` and changes nothing.
        Plugins are not reloaded (new connector types need a restart), and
        ``daemon.workers`` takes effect at the next start.
        """
        self.notifier.reloading()
        path = self.loaded.path
        try:
            loaded = load_config(path, self.registry)
            rt = self._open_runtime(loaded, reuse=self.runtime)
        except ConfigError as exc:
            self._invalid(path, [str(p) for p in exc.problems])
            return False
        except ConfigurationError as exc:
            self._invalid(path, [str(exc)])
            return False
        except Exception as exc:  # e.g. the new database is unreachable: keep running
            self._invalid(path, [f"{type(exc).__name__}: {exc}"])
            return False
        old = self.runtime
        register_secrets(loaded.secrets)
        log_cfg = loaded.config.log
        configure_logging(
            self.log_overrides.format or log_cfg.format.value,
            self.log_overrides.level or log_cfg.level.value,
        )
        self.log = get_logger()
        self.loaded = loaded
        self._rt = rt
        if rt.engine is not old.engine:
            self._retired.append(old)  # closed at shutdown: runs may still use it
        changes = self._sync_jobs()
        self._sync_watchers()
        restart_needed = []
        if loaded.config.daemon.workers != old.config.daemon.workers:
            restart_needed.append("daemon.workers")
        if loaded.config.daemon.http != old.config.daemon.http or loaded.http_auth != (
            old.loaded.http_auth
        ):
            restart_needed.append("daemon.http")
        cfg = loaded.config
        self.stale.forget(
            {("source", s.id) for s in cfg.sources} | {("account", a.id) for a in cfg.exports}
        )
        if self.endpoint is not None:
            self.endpoint.reconfigured()
        self.publish_schedule()
        self.check_stale()
        self._catch_up("reload")
        self.log.info(
            "daemon.reloaded",
            config=str(path),
            sources=len(loaded.config.sources),
            accounts=len(loaded.config.exports),
            restart_needed=restart_needed,
            **changes,
        )
        self.notifier.ready(self._status_line())
        return True

    def _invalid(self, path: Path, problems: list[str]) -> None:
        self.log.error(
            "config.invalid",
            file=str(path),
            problems=problems,
            action="kept the running configuration",
        )
        self.notifier.ready(f"configuration reload failed; {self._status_line()}")

    def _open_runtime(self, loaded: LoadedConfig, reuse: Runtime | None = None) -> Runtime:
        cfg = loaded.config
        if reuse is not None and (reuse.config.state, reuse.config.database) == (
            cfg.state,
            cfg.database,
        ):
            # Same database: keep the engine (and its connection pool); only
            # evaluators, templates and options are rebuilt.
            rt = Runtime(loaded, self.registry, self.clock, reuse.engine, reuse.blobs)
        else:
            rt = open_runtime(loaded, self.registry, self.clock)
        # One stop flag for every runtime, so SIGTERM reaches runs that
        # started under an older configuration too.
        rt.stop = self.stop
        # A job whose source or account another process (a `sync` by hand)
        # is running waits for it rather than being dropped: a slow run
        # delays the next one, it never loses it (SPEC section 7).
        rt.command = "run"
        rt.lock_wait = LockWait(wait=True)
        return rt

    # -- shutdown --------------------------------------------------------------------------

    def shutdown(self, signame: str) -> int:
        """Stop taking work, let runs finish or abandon cleanly, exit 0 in the grace period."""
        grace = self.runtime.config.daemon.grace_period.total_seconds()
        deadline = time.monotonic() + grace
        running = self.jobs.in_flight()
        self.log.info("daemon.stopping", signal=signame, grace_period=grace, running=running)
        self.notifier.stopping(f"stopping ({signame}); {len(running)} run(s) in progress")
        self.stop.set()  # connectors and the engine check it between documents and chunks
        self._stop_watchers()
        # wait=False: the worker pool is drained below with our own deadline;
        # queued job bodies see the stop flag and return at once.
        self.scheduler.shutdown(wait=False)
        worker_done = True
        if self._worker is not None:
            # Takes no new jobs; the running ones see the stop flag.
            worker_done = self._worker.stop(max(0.0, deadline - time.monotonic()))
        clean = self.jobs.wait_idle(max(0.0, deadline - time.monotonic())) and worker_done
        self._close_queue()
        abandoned = [] if clean else self.jobs.in_flight()
        if self.endpoint is not None:
            # After the runs: /healthz answered 503 while they finished.
            self.endpoint.stop(max(0.5, min(5.0, deadline - time.monotonic())))
        if clean:
            for rt in [self.runtime, *self._retired]:
                rt.close()
        with contextlib.suppress(OSError):
            remove_schedule(self.runtime.state_dir)
        self.log.info(
            "daemon.stopped",
            signal=signame,
            clean=clean,
            abandoned=abandoned,
            uptime_s=round(time.monotonic() - self._started, 1),
        )
        self.notifier.close()
        self.inbox.restore()
        if not clean:
            # A connector ignored the stop flag past the grace period. Whatever
            # it was writing is still marked "exporting" in the ledger and is
            # finished idempotently at the next start; exit now, with 0, as
            # promised: the interpreter would otherwise wait for the thread.
            sys.stderr.flush()
            os._exit(0)
        return 0


class _ToStructlog(logging.Handler):
    """Forward stdlib log records (APScheduler, libraries) as JSON events."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = get_logger(logger=record.name)
            message = record.getMessage()
            if record.levelno >= logging.ERROR:
                logger.error("library.log", message=message)
            else:
                logger.warning("library.log", message=message)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _route_library_logs() -> None:
    """Every line on stderr must be one of our events (log monitoring parses them).

    Libraries log through the stdlib; their warnings would otherwise reach
    stderr as bare text. Uncaught thread errors become ``daemon.thread_error``.
    """
    root = logging.getLogger()
    if not any(isinstance(h, _ToStructlog) for h in root.handlers):
        root.addHandler(_ToStructlog(level=logging.WARNING))
    logging.captureWarnings(True)
    # APScheduler reports skipped and missed runs itself at WARNING; our
    # listener logs them as job.* events, so keep only its errors.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def excepthook(args: threading.ExceptHookArgs) -> None:
        get_logger().error(
            "daemon.thread_error",
            thread=args.thread.name if args.thread else None,
            error=f"{args.exc_type.__name__}: {args.exc_value}",
        )

    threading.excepthook = excepthook
