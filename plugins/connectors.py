"""Base classes for connectors: :class:`Source` imports, :class:`Target` exports.

A connector type is a class with a ``type_name`` (what users write as ``type:``
in the configuration), an ``Options`` pydantic model (what they write under
``options:``) and a ``check()`` that tests the connection. Plugins hand their
classes to invoicesync through the ``invoicesync_register_sources`` and
``invoicesync_register_targets`` hooks; the built-in connectors do the same.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic.functional_validators import AfterValidator

from .models import Document, SkippedDocument, SourceDocument

__all__ = [
    "ConnectorContext",
    "ConnectorOptions",
    "ExportItem",
    "ExportResult",
    "FetchResult",
    "RelativePath",
    "Source",
    "Target",
    "WatchSpec",
]


class ConnectorOptions(BaseModel):
    """Base for connector options models: unknown keys are configuration errors."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


def _resolve_relative(value: Path, info: ValidationInfo) -> Path:
    # Relative paths in the configuration are relative to the configuration
    # file's folder (SPEC section 4), not to the working directory.
    if "\0" in str(value):
        # No operating system can name such a file; refused here, it is a
        # configuration error with file:line instead of a crash mid-run.
        raise ValueError("a path cannot contain a NUL character")
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return value


RelativePath = Annotated[Path, AfterValidator(_resolve_relative)]
"""A path option resolved against the configuration file's folder."""

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _nothing_known(external_id: str) -> str | None:
    return None


@dataclass
class ConnectorContext:
    """What the engine gives a connector besides its options.

    ``state_dir`` is a private folder the connector may use for caches.
    ``now`` is the evaluation clock (``--now`` on the command line).
    ``stop`` is set when the daemon is shutting down: long transfers should
    check it between chunks and raise :class:`~invoicesync.plugins.TransientError`
    to abandon cleanly. ``dry_run`` is true under ``sync --dry-run``: a source
    must then leave the remote side untouched (no flagging or moving mails).
    ``known_fingerprint`` (plugin API 1.3), during a source's ``fetch``: the
    ``fingerprint`` the catalog holds for one of the source's external ids
    (``None``: unknown, or no fingerprint). A source whose fingerprint is
    cheap (a file's ``stat``) may compare before reading anything: when equal,
    it yields a :class:`~invoicesync.plugins.SourceDocument` with that
    fingerprint and placeholder content (``b""``) and metadata -- the engine
    recognises the fingerprint and reads neither. Outside a fetch, and for
    engines older than 1.3, it always answers ``None``. Lookups are cheapest
    in sorted order of the external ids (the catalog reads ahead in pages).
    """

    id: str
    state_dir: Path
    logger: Any = None
    now: Callable[[], datetime] = _utcnow
    stop: threading.Event = field(default_factory=threading.Event)
    dry_run: bool = False
    known_fingerprint: Callable[[str], str | None] = _nothing_known


class _Connector(ABC, Generic[OptionsT]):
    type_name: ClassVar[str]
    """The ``type:`` users write in the configuration."""
    Options: ClassVar[type[BaseModel]]
    """The pydantic model that validates ``options:``."""
    description: ClassVar[str] = ""
    """One line for ``invoicesync plugins``."""
    requires: ClassVar[Mapping[str, str]] = {}
    """Python modules the connector imports lazily, each with what installs it,
    e.g. ``{"paramiko": "invoicesync[sftp]"}`` (API 1.2). A configuration using
    the connector without them is invalid ("pip install ..."), and ``invoicesync
    plugins`` marks the connector as needing them."""

    def __init__(self, id: str, options: OptionsT, context: ConnectorContext) -> None:
        self.id = id
        self.options = options
        self.context = context

    def check(self) -> None:
        """Test the connection and the credentials; raise a ConnectorError if broken.

        The default does nothing; connectors that talk to a server should
        override it (``invoicesync check-config --connect`` calls it).
        """

    def close(self) -> None:
        """Release connections; called once when the engine is done with it."""


FetchResult = Generator[SourceDocument | SkippedDocument, None, "str | None"]
"""What :meth:`Source.fetch` returns: a generator of documents whose return
value is the cursor the next fetch starts from."""


@dataclass(frozen=True)
class WatchSpec:
    """Local folders whose changes should start a fetch at once (watch mode).

    A source that reads local files returns one from :meth:`Source.watch_spec`;
    the daemon then watches ``paths`` (recursively if ``recursive``) and starts
    the source's import run when a changed path passes ``relevant`` (given the
    absolute path of what changed; ``None`` means every change counts).
    Bursts of changes are coalesced into one run.
    """

    paths: tuple[Path, ...]
    recursive: bool = True
    relevant: Callable[[Path], bool] | None = None


class Source(_Connector[OptionsT]):
    """A connector that imports documents into the catalog."""

    refetch_after: float | None = None
    """Set by :meth:`fetch` when it left documents for later that will be
    ready soon (a file still being written): the number of seconds after
    which a fetch should look again. ``None`` (the default) means nothing
    is waiting. The daemon reads it after the fetch and, for a watched
    source, runs one more import then; scheduled sources simply wait for
    their next run. Added in plugin API 1.1."""

    batch_commit: bool = False
    """Whether the engine may ask for the next documents before the ones
    already yielded are committed, and commit them in batches (group commit:
    one durability barrier and one transaction for up to a few hundred
    documents, which makes large imports several times faster). Leave it
    ``False`` (the default) when code after a ``yield`` relies on that
    document being stored, such as flagging or moving the mail it came from.
    With ``True`` a checkpoint cursor is still only saved together with every
    document yielded before it; a crash loses at most the uncommitted batch,
    which the next fetch yields again. A class or an instance attribute (it
    may depend on the options). Added in plugin API 1.3."""

    def watch_spec(self) -> WatchSpec | None:
        """What the daemon should watch to import without waiting for the schedule.

        The default, ``None``, means the source cannot be watched (most
        sources talk to servers). Called once when the daemon starts the
        source (and again after a reload that changed it). Added in plugin
        API 1.1.
        """
        return None

    @abstractmethod
    def fetch(self, cursor: str | None) -> FetchResult:
        """Yield the documents found after ``cursor``; return the next cursor.

        ``cursor`` is what the previous fetch returned (or the last
        checkpoint a :class:`SourceDocument` carried), ``None`` the first time.
        Yielding a document that the catalog already has is harmless: unchanged
        content is recognised by its hash. Raise TransientError for a broken
        connection; the documents stored so far stay stored. Yield a
        :class:`SkippedDocument` for one that cannot be imported (bad sidecar)
        instead of raising, so the others still import.

        Unless the source sets :attr:`batch_commit`, the engine commits each
        yielded document (with its checkpoint) to the catalog before it
        resumes the generator, so code after a ``yield`` may rely on that
        document being stored -- e.g. to flag or move the mail it came from.
        If the engine abandons the fetch it closes the generator
        (``GeneratorExit`` at the ``yield``) without committing that document.
        """


@dataclass(frozen=True)
class ExportItem:
    """One document to export, under the remote name the engine chose.

    ``remote_name`` is a relative POSIX path whose every component has been
    sanitised (no ``..``, no leading dot, no control characters). Targets join
    it below their root and must still never write outside it.
    """

    document: Document
    remote_name: str
    content_path: Path
    previous_ref: str | None = None

    def open(self) -> IO[bytes]:
        """Open the content for reading (binary)."""
        return self.content_path.open("rb")


@dataclass(frozen=True)
class ExportResult:
    """What a target reports after a successful export."""

    remote_ref: str
    """Where the document went: a path, URL, ETag or message id."""


class Target(_Connector[OptionsT]):
    """A connector that exports documents to a remote place."""

    defers_durability: ClassVar[bool] = False
    """True when :meth:`export` may return before the document is durable
    (written to the page cache, say, but not fsync'ed), leaving that to one
    :meth:`barrier` for many documents (group commit). The engine then never
    records a document as exported before a ``barrier()`` that followed its
    ``export()`` has returned. The default, ``False``, means each ``export()``
    is durable when it returns (a server confirmed the upload), and
    ``barrier()`` is never needed. Added in plugin API 1.3."""

    default_concurrency: ClassVar[int] = 1
    """How many documents the engine exports through this target at once when
    the account leaves ``concurrency:`` unset (plugin API 1.3).

    The engine then calls :meth:`export` from that many threads on one
    instance, so raise it only for a thread-safe target whose server gains
    from parallel requests (a network round trip per document dominates); keep
    memory per export small, as that many run at once. Values outside
    1..32 are clamped. The default, 1, is what every target got before 1.3."""

    @abstractmethod
    def export(self, item: ExportItem) -> ExportResult:
        """Write one document under ``item.remote_name`` and say where it went.

        Must be idempotent: exporting the same name again replaces the earlier
        file atomically (a reader never sees half a file) and leaves no
        duplicate. Raise TransientError when a retry may succeed and
        PermanentError when the remote side refuses the document for good.
        With :attr:`defers_durability` the write need not be durable yet;
        :meth:`barrier` makes it so.
        """

    def barrier(self) -> None:
        """Make everything :meth:`export` wrote so far durable (API 1.3).

        It must cover every ``export()`` that returned before it was called;
        exports still running on other threads belong to the next barrier.
        The engine calls it once per batch of exported documents, from the
        thread that commits the batch, before it records them as exported,
        and only when :attr:`defers_durability` is true. A target with
        :attr:`defers_durability` flushes here (``syncfs``, fsyncs, a
        server's commit); raise TransientError if that fails: the batch's
        documents are then recorded as failed and exported again later under
        the same names. The default does nothing (each export is already
        durable). Code that calls ``export()`` outside the engine must call
        ``barrier()`` too before it relies on the documents.
        """

    def sanitize_component(self, component: str) -> str:
        """Apply this target's own naming rules to one path component.

        Called after the generic sanitiser (SPEC section 3), so ``component``
        is already free of separators, control characters and ``..``. The
        default returns it unchanged; a target whose server rejects more
        characters (``:`` on SMB, ``#`` on some WebDAV servers) replaces them.
        """
        return component
