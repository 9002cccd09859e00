"""Everything a run needs, built once from a validated configuration.

A :class:`Runtime` owns the database engine, the catalog, the ledger, the run
log, one compiled restriction evaluator and filename template per account, and
creates connector instances. The daemon keeps one per configuration and builds
a new one on reload; one-shot commands build one and close it.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from invoicesync.daemon.config.loader import LoadedConfig
from invoicesync.daemon.config.models import Config, ExportConfig, SourceConfig
from invoicesync.daemon.logging import get_logger, redact
from invoicesync.daemon.naming import FilenameTemplate
from invoicesync.daemon.plugin_host import PluginRegistry
from invoicesync.daemon.restrictions import Evaluator, compile_restrictions
from invoicesync.daemon.storage.blobs import Blobs, open_blob_store
from invoicesync.daemon.storage.catalog import Catalog
from invoicesync.daemon.storage.database import (
    check_sqlite_file,
    create_engine,
    damaged,
    database_url,
    describe,
    is_damage,
    migrate,
    open_database,
    sqlite_file,
    translated_errors,
)
from invoicesync.daemon.storage.ledger import Ledger
from invoicesync.daemon.storage.private import make_private_dir
from invoicesync.daemon.storage.runs import RunLog
from invoicesync.daemon.storage.schema_guard import guard
from invoicesync.daemon.storage.scratch import postgres_scratch_copy
from invoicesync.plugins.connectors import ConnectorContext, Source, Target
from invoicesync.plugins.errors import ConfigurationError

from .clock import Clock
from .extraction import ExtractionStage
from .locks import Busy, Holder, Lease, LockWait, RunLocks, SubjectKind, run_locks_for


@dataclass
class Runtime:
    """A configuration made ready to run."""

    loaded: LoadedConfig
    registry: PluginRegistry
    clock: Clock
    engine: sa.Engine
    blobs: Blobs
    dry_run: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    _scratch: Path | None = None
    evaluators: dict[str, Evaluator] = field(default_factory=dict)
    templates: dict[str, FilenameTemplate] = field(default_factory=dict)
    command: str = "invoicesync"
    """The command this runtime serves (``sync``, ``run``...): named to
    other processes that find a source or account busy."""
    lock_wait: LockWait = field(default_factory=LockWait)
    """Whether runs wait for a source or account that another process runs."""
    _locks: RunLocks | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.engine, self.blobs)
        # Error texts are stored masked: a server may echo the credentials.
        self.ledger = Ledger(self.engine, scrub=redact)
        self.runs = RunLog(self.engine, scrub=redact)
        self.extraction = ExtractionStage(
            self.registry.extractors, self.config.sources, self.config.companies
        )
        tz = self.config.tz
        for account in self.config.exports:
            self.evaluators[account.id] = compile_restrictions(
                account.restrictions,
                tz,
                self.registry.checks,
                skip_duplicates=account.duplicates.value == "skip",
            )
            self.templates[account.id] = FilenameTemplate.parse(account.filename)

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def state_dir(self) -> Path:
        return Path(self.config.state)

    def connector_context(self, kind: str, ident: str) -> ConnectorContext:
        state = self.state_dir / "connectors" / f"{kind}-{ident}"
        if self.dry_run and self._scratch is not None:
            state = self._scratch / "connectors" / f"{kind}-{ident}"
        return ConnectorContext(
            id=ident,
            state_dir=state,
            logger=get_logger(**{kind: ident}),
            now=self.clock.now,
            stop=self.stop,
            dry_run=self.dry_run,
        )

    def make_source(self, source: SourceConfig) -> Source[Any]:
        cls = self.registry.source_type(source.type)
        context = self.connector_context("source", source.id)
        context.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(source.id, self.loaded.source_options[source.id], context)

    def make_target(self, account: ExportConfig) -> Target[Any]:
        cls = self.registry.target_type(account.type)
        context = self.connector_context("account", account.id)
        if not self.dry_run:
            context.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(account.id, self.loaded.export_options[account.id], context)

    @property
    def locks(self) -> RunLocks:
        """The run locks of this state (made on first use)."""
        if self._locks is None:
            self._locks = run_locks_for(self.engine, self.state_dir, self.command)
        return self._locks

    def run_lock(self, kind: SubjectKind, ident: str, log: Any) -> Lease:
        """Take the run lock of a source or account; raise :class:`Busy` if
        another process holds it (after waiting, when ``lock_wait`` says so).

        Logs ``run.busy`` when the lock is found held (``waiting``: whether
        this run waits for it) and when waiting gives up.
        """

        def waiting(holder: Holder) -> None:
            log.warning("run.busy", waiting=True, **holder.log_fields())

        try:
            return self.locks.acquire(
                kind, ident, wait=self.lock_wait, stop=self.stop, on_wait=waiting
            )
        except Busy as busy:
            log.warning(
                "run.busy",
                waiting=False,
                waited_s=None if busy.waited_s is None else round(busy.waited_s, 1),
                **busy.holder.log_fields(),
            )
            raise

    def close(self) -> None:
        if self._locks is not None:
            self._locks.close()
        self.engine.dispose()
        for cleanup in self._cleanup:
            cleanup()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def open_runtime(
    loaded: LoadedConfig,
    registry: PluginRegistry,
    clock: Clock,
    *,
    dry_run: bool = False,
    read_only: bool = False,
) -> Runtime:
    """Connect to the state and build a Runtime.

    ``dry_run`` works on a scratch copy of the catalog (sources may be
    fetched, nothing is written to the real state or any target): a copy of
    the SQLite file, or a temporary schema in the PostgreSQL database.
    """
    config = loaded.config
    state = Path(config.state)
    url = database_url(state, config.database)
    real = sqlite_file(url)
    if dry_run:
        scratch = Path(tempfile.mkdtemp(prefix="invoicesync-dry-run-"))
        blobs = open_blob_store(config.blobs, state, write=False)
        cleanups: list[Callable[[], None]] = []
        try:
            if real is not None:
                copy = scratch / "catalog.sqlite3"
                if real.exists():
                    _sqlite_snapshot(real, copy)
                engine = _scratch_engine(copy, real, blobs)
            else:
                # Check the real database (nothing changed in it), then plan
                # on a temporary copy of it.
                _check_only(url, blobs)
                engine, cleanup = postgres_scratch_copy(url)
                cleanups.append(cleanup)
                migrate(engine)
        except BaseException:
            for cleanup in cleanups:
                cleanup()
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return Runtime(
            loaded,
            registry,
            clock,
            engine,
            blobs,
            dry_run=True,
            _scratch=scratch,
            _cleanup=cleanups,
        )
    if read_only and real is not None and not real.exists():
        # Reading commands on a fresh install: an empty scratch catalog, and
        # nothing created in the real state folder.
        scratch = Path(tempfile.mkdtemp(prefix="invoicesync-empty-"))
        blobs = open_blob_store(config.blobs, state, write=False)
        try:
            engine = _scratch_engine(scratch / "catalog.sqlite3", real, blobs)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return Runtime(loaded, registry, clock, engine, blobs, _scratch=scratch)
    # Before anything creates it as a side effect (the blob store's folder):
    # the state folder is 0700 whatever the umask.
    try:
        make_private_dir(state)
        blobs = open_blob_store(config.blobs, state)
        engine = open_database(state, config.database, blobs=blobs)
    except OSError as exc:
        # A read-only or missing folder is a problem of the set-up, not a bug:
        # say which folder and how to choose another (no traceback, exit 2).
        raise ConfigurationError(
            f"state folder {state}: {exc.strerror or exc}; set `state:` in the configuration "
            "to a writable folder, or leave it out to use $STATE_DIRECTORY (systemd) or "
            "$XDG_STATE_HOME/invoicesync"
        ) from exc
    return Runtime(loaded, registry, clock, engine, blobs)


def _scratch_engine(copy: Path, real: Path, blobs: Blobs) -> sa.Engine:
    """An engine on a scratch copy of the catalog ``real``, checked like the real one."""
    engine = create_engine(f"sqlite:///{copy}")
    try:
        with translated_errors(str(real)):
            guard(engine, str(real), blobs=blobs, catalog_hint=str(real), upgrade_behind=True)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _check_only(url: str, blobs: Blobs) -> None:
    """The upgrade policy's refusals for a database a dry run must not change."""
    engine = create_engine(url)
    try:
        with translated_errors(describe(url)):
            guard(
                engine,
                describe(url),
                blobs=blobs,
                catalog_hint="the database",
                upgrade_behind=False,
                change=False,
            )
    finally:
        engine.dispose()


def _sqlite_snapshot(source: Path, target: Path) -> None:
    # The backup API reads a consistent snapshot through a read-only
    # connection: the real catalog file is never written. When no -wal file
    # exists no process has the catalog open, and ``immutable`` reads it
    # without creating the -wal/-shm files that even a read-only WAL reader
    # would leave behind (a dry run must not change the state folder at all).
    check_sqlite_file(source)
    wal = source.with_name(source.name + "-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    src = sqlite3.connect(f"file:{source}?{flags}", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            raise damaged(str(source), str(exc)) from exc
        raise
    finally:
        dst.close()
        src.close()
