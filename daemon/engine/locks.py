"""One run per source and per account, across processes.

An import run of a source and an export run of an account each hold a *run
lock* for their whole duration, whoever starts them: ``sync``, ``fetch``,
``retry`` or the daemon's jobs. A second process that wants the same source
or account either gives up at once (the command reports who holds it and
exits with :data:`EXIT_BUSY`) or, when asked to (``--wait``, the daemon),
waits until the holder is done.

Without it two processes on one state would export the same documents side
by side: both read the same candidates from the ledger before either
records its intent, and every document goes out twice.

Two implementations of one interface (:class:`RunLocks`):

- :class:`FileRunLocks`, one machine: an exclusive ``flock`` on a file per
  source or account in ``STATE/locks/`` (mode 0600). The kernel drops the
  lock when its holder exits, however it exits (``kill -9`` included), so a
  lock is never stale. The holder writes who it is into the file.
- :class:`PostgresRunLocks`, N machines on one PostgreSQL database: a
  session-level advisory lock, held on a connection of its own for the run's
  duration (the server drops it when that connection or its node dies). The
  holder's identity is in the connection's ``application_name``, which any
  node reads from ``pg_stat_activity``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import sqlalchemy as sa

__all__ = [
    "EXIT_BUSY",
    "Busy",
    "FileRunLocks",
    "Holder",
    "Lease",
    "LockWait",
    "PostgresRunLocks",
    "RunLocks",
    "SubjectKind",
    "run_locks_for",
]

#: Exit code of a command that left work undone because another process was
#: doing it (``EX_TEMPFAIL`` of sysexits.h: "try again later"; cron wrappers
#: and systemd's ``RestartPreventExitStatus=`` know it).
EXIT_BUSY = 75

SubjectKind = Literal["source", "account", "scheduler"]

_VERB = {"source": "importing", "account": "exporting to", "scheduler": "running"}


@dataclass(frozen=True)
class Holder:
    """Who holds a run lock, as far as it could be found out."""

    pid: int | None = None
    command: str | None = None
    host: str | None = None
    since: datetime | None = None

    def describe(self) -> str:
        """``invoicesync sync (pid 4242 on host1) since 2026-11-30 12:01:02 UTC``."""
        who = f"invoicesync {self.command}" if self.command else "another invoicesync process"
        where = []
        if self.pid is not None:
            where.append(f"pid {self.pid}")
        if self.host and self.host != socket.gethostname():
            where.append(f"on {self.host}")
        text = who + (f" ({' '.join(where)})" if where else "")
        if self.since is not None:
            text += f" since {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        return text

    def log_fields(self) -> dict[str, Any]:
        return {
            "holder_pid": self.pid,
            "holder_command": self.command,
            "holder_host": self.host,
            "holder_since": self.since.isoformat() if self.since else None,
        }


class Busy(Exception):
    """Another process runs this source or account right now."""

    def __init__(
        self, kind: SubjectKind, ident: str, holder: Holder, *, waited_s: float | None = None
    ) -> None:
        self.kind = kind
        self.ident = ident
        self.holder = holder
        self.waited_s = waited_s
        text = f"{kind} {ident} is busy: {holder.describe()} is {_VERB[kind]} it"
        if waited_s is not None:
            text += f" (gave up after waiting {waited_s:.0f} s)"
        super().__init__(text)


@dataclass(frozen=True)
class LockWait:
    """What to do when a run lock is held elsewhere."""

    wait: bool = False
    """False: give up at once (:class:`Busy`); True: wait for it."""
    timeout: float | None = None
    """Give up after this many seconds of waiting; None: no limit."""


class Lease:
    """A held run lock; release it exactly once (or use it as a context manager)."""

    def __init__(
        self, release: Callable[[], None], alive: Callable[[], bool] | None = None
    ) -> None:
        self._release = release
        self._alive = alive
        self._released = False

    def alive(self) -> bool:
        """Whether the lock is still held (a database lock dies with its connection)."""
        if self._released:
            return False
        return True if self._alive is None else self._alive()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class RunLocks(ABC):
    """Run locks for one state (one catalog), shared by every process using it."""

    #: Longest pause between two attempts while waiting for a lock.
    MAX_POLL_S = 0.5

    def __init__(self, command: str) -> None:
        self.command = command

    def acquire(
        self,
        kind: SubjectKind,
        ident: str,
        *,
        wait: LockWait = LockWait(),
        stop: threading.Event | None = None,
        on_wait: Callable[[Holder], None] | None = None,
    ) -> Lease:
        """Take the run lock of ``kind`` ``ident``, or raise :class:`Busy`.

        When the lock is held elsewhere and ``wait.wait`` is set, ``on_wait``
        hears who holds it, then this waits (until ``wait.timeout`` runs out
        or ``stop`` is set, both raising :class:`Busy`).
        """
        lease = self._try(kind, ident)
        if lease is not None:
            return lease
        holder = self._holder(kind, ident)
        if not wait.wait:
            raise Busy(kind, ident, holder)
        if on_wait is not None:
            on_wait(holder)
        started = time.monotonic()
        delay = 0.02
        stop = stop or threading.Event()
        while True:
            if wait.timeout is not None:
                left = wait.timeout - (time.monotonic() - started)
                if left <= 0:
                    raise Busy(
                        kind, ident, self._holder(kind, ident), waited_s=time.monotonic() - started
                    )
                delay = min(delay, left)
            # Polling: neither flock nor advisory locks can be waited for with
            # both a timeout and a stop flag; the pause grows to MAX_POLL_S.
            if stop.wait(delay):
                raise Busy(
                    kind, ident, self._holder(kind, ident), waited_s=time.monotonic() - started
                )
            lease = self._try(kind, ident)
            if lease is not None:
                return lease
            delay = min(delay * 2, self.MAX_POLL_S)

    def holder(self, kind: SubjectKind, ident: str) -> Holder | None:
        """Who holds the lock now, or None when it is free."""
        lease = self._try(kind, ident)
        if lease is not None:
            lease.release()
            return None
        return self._holder(kind, ident)

    @abstractmethod
    def _try(self, kind: SubjectKind, ident: str) -> Lease | None:
        """Take the lock if it is free, without waiting."""

    @abstractmethod
    def _holder(self, kind: SubjectKind, ident: str) -> Holder:
        """Who holds the lock (best effort: it may just have been released)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free resources (connections); held leases stay valid until released."""


class FileRunLocks(RunLocks):
    """``flock`` on ``FOLDER/<kind>-<id>.lock``: one machine, any number of processes."""

    def __init__(self, folder: Path, command: str) -> None:
        super().__init__(command)
        self.folder = folder

    def path(self, kind: SubjectKind, ident: str) -> Path:
        # Ids match ID_PATTERN (letters, digits, '.', '_', '-', no leading dot):
        # always a plain file name.
        return self.folder / f"{kind}-{ident}.lock"

    def _open(self, kind: SubjectKind, ident: str) -> int:
        if not self.folder.is_dir():
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path(kind, ident), flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask was when it was created
        except OSError:
            os.close(fd)
            raise
        return fd

    def _try(self, kind: SubjectKind, ident: str) -> Lease | None:
        fd = self._open(kind, ident)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        record = {
            "pid": os.getpid(),
            "command": self.command,
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)

        def release() -> None:
            # Emptied first, so that nobody reads a finished run as the holder.
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing drops the flock

        return Lease(release)

    def _holder(self, kind: SubjectKind, ident: str) -> Holder:
        try:
            text = self.path(kind, ident).read_text(encoding="utf-8")
            data = json.loads(text)
            return Holder(
                pid=int(data["pid"]),
                command=str(data["command"]),
                host=str(data.get("host") or "") or None,
                since=datetime.fromisoformat(data["since"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            # The holder has the lock but has not written its name yet.
            return Holder()


class PostgresRunLocks(RunLocks):
    """Session-level advisory locks in the catalog's PostgreSQL database: N nodes.

    Each held lock keeps one connection of its own (from a small pool made
    for locks, so that runs never starve the catalog's pool). Advisory locks
    belong to a whole database, so the key includes the schema: installations
    that share a database in different schemas never block each other.
    """

    APP_PREFIX = "invoicesync:"

    def __init__(self, engine: sa.Engine, command: str) -> None:
        super().__init__(command)
        # NullPool: a lock's connection is closed with the lock, and a
        # waiting node's attempts hold no connection between them.
        self._engine = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
        with self._engine.connect() as conn:
            self._namespace = str(conn.execute(sa.text("SELECT current_schema()")).scalar_one())

    def key(self, kind: SubjectKind, ident: str) -> tuple[int, int]:
        """The two 32-bit keys of ``pg_advisory_lock(int, int)`` for a subject."""
        digest = hashlib.sha256(f"{self._namespace}\0{kind}\0{ident}".encode()).digest()
        return (
            int.from_bytes(digest[:4], "big", signed=True),
            int.from_bytes(digest[4:8], "big", signed=True),
        )

    def _try(self, kind: SubjectKind, ident: str) -> Lease | None:
        k1, k2 = self.key(kind, ident)
        conn = self._engine.connect()
        try:
            got = conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:k1, :k2)"), {"k1": k1, "k2": k2}
            ).scalar_one()
            if not got:
                conn.rollback()
                conn.close()
                return None
            # Who we are, for the holder message on other nodes (63 bytes at most).
            app = (
                f"{self.APP_PREFIX}{self.command}:{os.getpid()}:{int(time.time())}:"
                f"{socket.gethostname()}"
            )[:63]
            conn.execute(sa.text("SELECT set_config('application_name', :a, false)"), {"a": app})
            conn.commit()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise

        def release() -> None:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k1, :k2)"), {"k1": k1, "k2": k2})
                conn.commit()
            except sa.exc.DBAPIError:
                conn.invalidate()  # the server dropped the lock with the connection
            finally:
                conn.close()

        def alive() -> bool:
            try:
                conn.execute(sa.text("SELECT 1")).scalar_one()
                conn.commit()
                return True
            except sa.exc.DBAPIError:
                return False

        return Lease(release, alive)

    def _holder(self, kind: SubjectKind, ident: str) -> Holder:
        k1, k2 = self.key(kind, ident)
        # Two-key advisory locks show classid = key1, objid = key2, objsubid = 2
        # in pg_locks (as unsigned oids).
        query = sa.text(
            "SELECT a.application_name, a.client_hostname, a.client_addr::text AS addr "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
            "AND l.classid = :c AND l.objid = :o AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        try:
            with self._engine.connect() as conn:
                row = conn.execute(query, {"c": k1 & 0xFFFFFFFF, "o": k2 & 0xFFFFFFFF}).first()
        except sa.exc.DBAPIError:
            return Holder()
        if row is None or not str(row.application_name or "").startswith(self.APP_PREFIX):
            return Holder(host=(row.client_hostname or row.addr) if row is not None else None)
        parts = str(row.application_name)[len(self.APP_PREFIX) :].split(":", 3)
        try:
            command, pid, since, host = parts
            return Holder(
                pid=int(pid),
                command=command,
                host=host or None,
                since=datetime.fromtimestamp(int(since), UTC),
            )
        except ValueError:
            return Holder()

    def close(self) -> None:
        self._engine.dispose()


def run_locks_for(engine: sa.Engine, state_dir: Path, command: str) -> RunLocks:
    """Advisory locks when the catalog is on PostgreSQL (it may be shared by
    several machines), else lock files in the state folder."""
    if engine.dialect.name == "postgresql":
        return PostgresRunLocks(engine, command)
    return FileRunLocks(state_dir / "locks", command)
