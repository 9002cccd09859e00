"""``executor: procrastinate``: the daemon's jobs in a PostgreSQL queue, run by any node.

Three parts, each a small wrapper around procrastinate (PostgreSQL-backed):

- :class:`JobQueue` defers jobs: an import of a source or an export to an
  account, with ``queueing_lock`` = the job id (``import:ID``/``export:ID``:
  at most one such job waits in the queue, so requests from many nodes and
  many ``after_import`` chains collapse into one) and ``lock`` = the source or
  account (``source:ID``/``account:ID``: procrastinate starts one job per lock
  at a time, in order).
- :class:`Leadership`: every node runs the same schedules, but only the node
  holding the PostgreSQL advisory lock "scheduler" defers scheduled jobs, so
  N nodes produce one run per tick. When that node dies its connection dies
  with it, the server drops the lock, and the next tick of another node
  takes over.
- :class:`QueueWorker`: a procrastinate worker on an event loop of its own,
  running the job bodies in threads. It sends a heartbeat every
  ``daemon.heartbeat``; a worker silent for ``daemon.stalled_after`` is dead,
  and any live worker puts its running jobs back in the queue. The ledger's
  intent records make that retry converge: a document the dead node was
  exporting is exported again under the same name, idempotently.

The run locks (:mod:`invoicesync.daemon.engine.locks`) still guard every run,
so a ``sync`` or ``retry`` by hand on any node never overlaps a queued job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from invoicesync.daemon.engine.locks import Busy, Lease, PostgresRunLocks
from invoicesync.daemon.logging import get_logger

__all__ = [
    "EXPORT_TASK",
    "IMPORT_TASK",
    "JobQueue",
    "Leadership",
    "QueueWorker",
    "conninfo",
    "ensure_queue_schema",
]

IMPORT_TASK = "invoicesync.import"
EXPORT_TASK = "invoicesync.export"


def conninfo(engine: sa.Engine) -> str:
    """The libpq connection URI of ``engine``'s database (query options kept)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_queue_schema(engine: sa.Engine) -> bool:
    """Create procrastinate's tables in the catalog's schema if they are missing.

    Serialised by a transaction-level advisory lock, so that N nodes starting
    together create them once. Returns True when it created them. (Upgrading
    procrastinate later: apply its migrations, see docs/scaling.md.)
    """
    from procrastinate.schema import SchemaManager

    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock("
                "hashtext('invoicesync:queue-schema:' || current_schema()))"
            )
        )
        present = conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        if present is not None:
            return False
        # Straight to the driver without parameters: the schema's SQL holds
        # '%' signs that a parameterised execution would read as placeholders.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(SchemaManager.get_schema())
        finally:
            cursor.close()
    return True


def _job_ids(kind: str, subject: str) -> tuple[str, str]:
    """(queueing_lock, lock): ``import:ID``/``source:ID`` or ``export:ID``/``account:ID``."""
    if kind == "import":
        return f"import:{subject}", f"source:{subject}"
    return f"export:{subject}", f"account:{subject}"


class JobQueue:
    """Defers import and export jobs (thread-safe; its own small connection pool)."""

    def __init__(self, engine: sa.Engine) -> None:
        import procrastinate

        self.app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(
                conninfo=conninfo(engine), min_size=1, max_size=4
            )
        )
        self.app.open()

    def defer(self, kind: str, subject: str, reason: str) -> bool:
        """Queue a run of ``kind`` (``import``/``export``) of ``subject``.

        False when one is queued already (it will see whatever this request
        was about: runs read the catalog when they start).
        """
        from procrastinate.exceptions import AlreadyEnqueued

        queueing_lock, lock = _job_ids(kind, subject)
        task = IMPORT_TASK if kind == "import" else EXPORT_TASK
        try:
            self.app.configure_task(
                task, allow_unknown=True, queueing_lock=queueing_lock, lock=lock
            ).defer(subject=subject, reason=reason)
        except AlreadyEnqueued:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.app.close()


class Leadership:
    """Which node defers the scheduled jobs: the holder of an advisory lock."""

    def __init__(self, engine: sa.Engine) -> None:
        self._locks = PostgresRunLocks(engine, "run")
        self._lease: Lease | None = None
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        """True if this node schedules (taking the role if nobody has it)."""
        with self._lock:
            if self._lease is not None and self._lease.alive():
                return True
            if self._lease is not None:
                get_logger().warning("queue.leader_lost")
                self._lease.release()
                self._lease = None
            try:
                self._lease = self._locks.acquire("scheduler", "leader")
            except Busy:
                return False
            except sa.exc.DBAPIError:
                return False  # the database is away: nobody schedules until it is back
            get_logger().info("queue.leader", pid=os.getpid(), host=socket.gethostname())
            return True

    def close(self) -> None:
        with self._lock:
            if self._lease is not None:
                self._lease.release()
                self._lease = None
        self._locks.close()


class QueueWorker:
    """A procrastinate worker in a thread: runs queued jobs with ``run_job``."""

    def __init__(
        self,
        engine: sa.Engine,
        run_job: Callable[[str, str, str], None],
        *,
        concurrency: int,
        heartbeat: float,
        stalled_after: float,
        grace_period: float,
    ) -> None:
        import procrastinate

        self.run_job = run_job
        self.concurrency = concurrency
        self.heartbeat = heartbeat
        self.stalled_after = stalled_after
        self.grace_period = grace_period
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=conninfo(engine), min_size=1, max_size=concurrency + 3
            )
        )

        @self.app.task(name=IMPORT_TASK)
        def import_task(subject: str, reason: str = "queue") -> None:
            self.run_job("import", subject, reason)

        @self.app.task(name=EXPORT_TASK)
        def export_task(subject: str, reason: str = "queue") -> None:
            self.run_job("export", subject, reason)

        self._worker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="queue-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            get_logger().error("queue.worker_stopped", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from procrastinate.worker import Worker

        async with self.app.open_async():
            self._worker = Worker(
                app=self.app,
                name=self.name,
                concurrency=self.concurrency,
                install_signal_handlers=False,
                update_heartbeat_interval=self.heartbeat,
                stalled_worker_timeout=self.stalled_after,
                shutdown_graceful_timeout=self.grace_period,
                delete_jobs="successful",
                fetch_job_polling_interval=min(5.0, self.heartbeat),
            )
            requeuer = asyncio.create_task(self._requeue_stalled())
            self._ready.set()
            get_logger().info(
                "queue.worker_started", worker=self.name, concurrency=self.concurrency
            )
            try:
                await self._worker.run()
            finally:
                requeuer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await requeuer

    async def _requeue_stalled(self) -> None:
        """Put the jobs of dead workers back in the queue (every heartbeat)."""
        manager = self.app.job_manager
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=self.stalled_after)
                for job in stalled:
                    try:
                        await manager.retry_job(job)
                    except Exception:  # another node re-queued it first
                        continue
                    get_logger().warning(
                        "queue.job_requeued",
                        job=job.queueing_lock or job.task_name,
                        job_id=job.id,
                        dead_worker=job.worker_id,
                    )
            except Exception as exc:  # the database is away: try again next beat
                get_logger().warning("queue.error", error=f"{type(exc).__name__}: {exc}")

    def stop(self, timeout: float) -> bool:
        """Stop taking jobs, let running ones finish; False if still running at ``timeout``."""
        if self._worker is not None:
            self._worker.stop()
        self._thread.join(timeout)
        return not self._thread.is_alive()
