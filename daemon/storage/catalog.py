"""The catalog: every imported document, its revisions, and source cursors.

``Catalog.store`` is the one way documents enter: the content goes to the blob
store first, then the row, its revision and the source's checkpoint cursor are
committed in one transaction. A crash before the commit loses nothing the
source cannot give again; a crash after it leaves a consistent row.

Imports use :class:`ImportBatch` (group commit): each document's content is
written as it arrives, one durability barrier covers the whole batch's blobs,
then one transaction commits all its rows, revisions and the source's last
cursor. Should that transaction fail (a document the database refuses, a
concurrent writer that won a race), the batch is committed again one
document at a time, so one bad document never costs the others.
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from invoicesync.plugins.models import Document, DocumentMetadata, SourceDocument
from invoicesync.plugins.names import CONTROL_CHARACTERS

from .blobs import BlobBatch, Blobs
from .schema import document_revisions, documents, source_cursors

_METADATA_FIELDS = tuple(DocumentMetadata.model_fields)


_SELECT_ONE = sa.select(documents).where(documents.c.id == sa.bindparam("doc_id"))
_INSERT = documents.insert()
_UPDATE = (
    documents.update()
    .where(documents.c.id == sa.bindparam("doc_id"))
    .values(
        {
            c.name: sa.bindparam(c.name)
            for c in documents.c
            if c.name not in ("id", "source", "external_id", "import_date")
        }
    )
)
_INSERT_REVISION = document_revisions.insert()
_UPDATE_CURSOR = (
    source_cursors.update()
    .where(source_cursors.c.source == sa.bindparam("src"))
    .values(cursor=sa.bindparam("cursor"), updated_at=sa.bindparam("updated_at"))
)
_INSERT_CURSOR = source_cursors.insert()


def _is_original() -> sa.ColumnElement[bool]:
    """``duplicate_of IS NULL``, written so that no query plan uses its index.

    Nearly every row is an original, so that index narrows nothing down; yet
    SQLite's planner (which has no statistics unless ANALYZE ran) prefers it
    to the sha256 and business_key indexes and then walks every original for
    each lookup: a first import of N documents became quadratic (about 15 s
    of a 100,000-document import). Appending ``''`` keeps NULL NULL on SQLite
    and PostgreSQL and disqualifies the term from index use (SQLite's query
    optimizer overview, "Disqualifying WHERE clause terms using unary-+").
    """
    return (documents.c.duplicate_of + "").is_(None)


def _original_query(with_key: bool, with_date: bool) -> sa.Select[Any]:
    c = documents.c
    same = sa.and_(c.sha256 == sa.bindparam("sha"), c.source != sa.bindparam("source_id"))
    if with_key:
        same = sa.or_(same, c.business_key == sa.bindparam("key"))
    query = sa.select(c.id, c.sha256, c.source).where(
        c.id != sa.bindparam("doc_id"), _is_original(), same
    )
    if with_date:
        imported = sa.bindparam("imported", type_=c.import_date.type)
        query = query.where(
            sa.or_(
                c.import_date < imported,
                sa.and_(c.import_date == imported, c.id < sa.bindparam("doc_id")),
            )
        )
    return query.order_by(c.import_date, c.id).limit(1)


# A batch of first imports (see _insert_all_new): is any of these ids present,
# does any original share a hash or a business key with them?
_ANY_PRESENT = (
    sa.select(documents.c.id)
    .where(documents.c.id.in_(sa.bindparam("ids", expanding=True)))
    .limit(1)
)
_ANY_ORIGINAL = (
    sa.select(documents.c.id)
    .where(
        _is_original(),
        sa.or_(
            documents.c.sha256.in_(sa.bindparam("shas", expanding=True)),
            documents.c.business_key.in_(sa.bindparam("keys", expanding=True)),
        ),
    )
    .limit(1)
)

# Built once: building this select anew per document cost more than running it.
_FIND_ORIGINAL = {(k, d): _original_query(k, d) for k in (False, True) for d in (False, True)}

#: What fails one document, not the import: bad values, unreadable content, a
#: row the database refuses.
DOCUMENT_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, sa.exc.IntegrityError)


class ImportStatus(StrEnum):
    NEW = "new"
    NEW_REVISION = "new_revision"
    METADATA = "metadata"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ImportOutcome:
    status: ImportStatus
    document_id: str
    revision: int
    duplicate_of: str | None = None
    """Set when this store marked the document a duplicate of an earlier one."""
    duplicate_reason: str | None = None


@dataclass(frozen=True)
class Derived:
    """What the import stage derived from the content rather than the source."""

    provenance: Mapping[str, str] = field(default_factory=dict)
    einvoice_valid: bool | None = None
    einvoice_errors: tuple[str, ...] = ()


_NO_DERIVED = Derived()
#: The provenance key recording why a document is a duplicate.
DUPLICATE_KEY = "duplicate_of"


@dataclass(frozen=True)
class StagedDocument:
    """A document whose content is written, ready for its catalog row."""

    source_id: str
    doc_id: str
    item: SourceDocument
    sha: str
    size: int
    media_type: str
    meta: dict[str, Any]
    now: datetime


def business_key(metadata: DocumentMetadata) -> str | None:
    """SHA-256 of seller (VAT id, else name), number, gross amount and currency.

    None unless all four are known: a partial key would merge different invoices.
    """
    fields = metadata.fields
    seller = fields.get("seller_vat_id") or fields.get("seller_name")
    if not seller or not metadata.number or metadata.gross_amount is None or not metadata.currency:
        return None
    seller = "".join(seller.split()).casefold()
    number = " ".join(metadata.number.split()).casefold()
    gross = format(metadata.gross_amount.normalize(), "f")
    text = "\x1f".join((seller, number, gross, metadata.currency.upper()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_id(source_id: str, external_id: str) -> str:
    return f"{source_id}/{external_id}"


def validate_external_id(external_id: str) -> None:
    if not external_id or len(external_id) > 500 or CONTROL_CHARACTERS.search(external_id):
        raise ValueError("external id must be 1-500 characters without control characters")


def _metadata_columns(metadata: DocumentMetadata) -> dict[str, Any]:
    values = {name: getattr(metadata, name) for name in _METADATA_FIELDS}
    values["type"] = metadata.type.value
    values["payment_status"] = metadata.payment_status.value
    values["tags"] = sorted(metadata.tags)
    values["fields"] = dict(sorted(metadata.fields.items()))
    return values


def row_to_document(row: Any) -> Document:
    """A ``documents`` row -> Document."""
    return document_from_mapping(dict(row._mapping))


def document_from_mapping(data: dict[str, Any]) -> Document:
    """The ``documents`` columns of a row, as a dict (consumed) -> Document."""
    data.pop("fingerprint", None)
    data.pop("updated_at", None)
    data.pop("business_key", None)
    return Document.model_validate(data)


class Catalog:
    """Documents in the database plus their content in the blob store."""

    def __init__(self, engine: sa.Engine, blobs: Blobs) -> None:
        self.engine = engine
        self.blobs = blobs

    # -- reading -------------------------------------------------------------

    def get(self, doc_id: str) -> Document | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(documents).where(documents.c.id == doc_id)).first()
        return None if row is None else row_to_document(row)

    def iter_documents(
        self, where: sa.ColumnElement[bool] | None = None, batch: int = 1000
    ) -> Iterator[Document]:
        """Every matching document in id order, fetched in batches (keyset
        pagination: no long-lived read transaction, bounded memory)."""
        last: str | None = None
        while True:
            query = sa.select(documents).order_by(documents.c.id).limit(batch)
            if where is not None:
                query = query.where(where)
            if last is not None:
                query = query.where(documents.c.id > last)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield row_to_document(row)
            if len(rows) < batch:
                return
            last = rows[-1].id

    def count(self, source: str | None = None) -> int:
        """Documents in the catalog (of one source)."""
        query = sa.select(sa.func.count()).select_from(documents)
        if source is not None:
            query = query.where(documents.c.source == source)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def cursor(self, source_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(source_cursors.c.cursor).where(source_cursors.c.source == source_id)
            ).scalar_one_or_none()

    def fingerprints(self, source_id: str) -> Fingerprints:
        """The recorded fingerprints of a source's documents, read as needed.

        A lookup (``get(external_id)``), not a dict: it holds one page of the
        source's rows at a time, so its memory does not grow with the catalog
        (see :class:`Fingerprints`).
        """
        return Fingerprints(self.engine, source_id)

    # -- writing -------------------------------------------------------------

    def save_cursor(self, source_id: str, cursor: str | None, now: datetime) -> None:
        with self.engine.begin() as conn:
            self._save_cursor(conn, source_id, cursor, now)

    def _save_cursor(
        self, conn: sa.Connection, source_id: str, cursor: str | None, now: datetime
    ) -> None:
        updated = conn.execute(
            _UPDATE_CURSOR, {"src": source_id, "cursor": cursor, "updated_at": now}
        )
        if updated.rowcount == 0:
            conn.execute(_INSERT_CURSOR, {"source": source_id, "cursor": cursor, "updated_at": now})

    #: How often :meth:`store` starts over after losing a race with another writer.
    STORE_ATTEMPTS = 3

    def store(
        self,
        source_id: str,
        item: SourceDocument,
        now: datetime,
        derived: Derived = _NO_DERIVED,
    ) -> ImportOutcome:
        """Add or update one document (and save its checkpoint) in one transaction.

        Safe against another process storing the same document at the same
        moment: the loser of the race (its insert of the row or of the
        revision violates a key) starts over and finds the winner's row,
        which makes its own write an update or nothing at all.

        ``derived`` is what extractors found beyond the source's metadata. A new
        document (or one whose content or business key changed) that repeats an
        earlier one is marked ``duplicate_of`` it, in the same transaction.
        """
        staged = self._staged(source_id, item, now, derived, self.blobs.put)
        return self._store_staged(staged)

    def batch(self, source_id: str, *, documents: int | None = None) -> ImportBatch:
        """A group commit of ``source_id``'s documents (see :class:`ImportBatch`),
        full at ``documents`` documents (default :data:`BATCH_DOCUMENTS`)."""
        return ImportBatch(self, source_id, documents)

    def _staged(
        self,
        source_id: str,
        item: SourceDocument,
        now: datetime,
        derived: Derived,
        put: Any,
    ) -> StagedDocument:
        validate_external_id(item.external_id)
        doc_id = document_id(source_id, item.external_id)
        sha, size = put(item.content)
        media_type = (
            item.media_type or mimetypes.guess_type(item.filename)[0] or "application/octet-stream"
        )
        meta = _metadata_columns(item.metadata)
        meta["provenance"] = dict(sorted(derived.provenance.items()))
        meta["einvoice_valid"] = derived.einvoice_valid
        meta["einvoice_errors"] = list(derived.einvoice_errors)
        meta["business_key"] = business_key(item.metadata)
        return StagedDocument(source_id, doc_id, item, sha, size, media_type, meta, now)

    def _store_staged(self, staged: StagedDocument) -> ImportOutcome:
        """One document in a transaction of its own, started over when it
        loses a race with another writer (see :meth:`store`)."""
        for attempt in range(1, self.STORE_ATTEMPTS + 1):
            try:
                with self.engine.begin() as conn:
                    outcome = self._write(conn, staged)
                    if staged.item.cursor is not None:
                        self._save_cursor(conn, staged.source_id, staged.item.cursor, staged.now)
                return outcome
            except sa.exc.IntegrityError:
                if attempt == self.STORE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _write(self, conn: sa.Connection, staged: StagedDocument) -> ImportOutcome:
        # A fresh copy per attempt: _store adds the duplicate's reason.
        meta = {**staged.meta, "provenance": dict(staged.meta["provenance"])}
        return self._store(
            conn,
            staged.source_id,
            staged.doc_id,
            staged.item,
            staged.sha,
            staged.size,
            staged.media_type,
            meta,
            staged.now,
        )

    def _store(
        self,
        conn: sa.Connection,
        source_id: str,
        doc_id: str,
        item: SourceDocument,
        sha: str,
        size: int,
        media_type: str,
        meta: dict[str, Any],
        now: datetime,
    ) -> ImportOutcome:
        # Statements take their values as execution parameters (not .values()),
        # so SQLAlchemy compiles each statement once and reuses it: this is
        # the hot path of every import.
        key = meta["business_key"]
        row = conn.execute(_SELECT_ONE, {"doc_id": doc_id}).first()
        duplicate: tuple[str, str] | None = None
        if row is None or (
            row.duplicate_of is None and (row.sha256 != sha or row.business_key != key)
        ):
            duplicate = _find_original(
                conn, doc_id, source_id, sha, key, None if row is None else row.import_date
            )
        if duplicate is not None:
            meta["provenance"][DUPLICATE_KEY] = duplicate[1]
        elif row is not None and row.duplicate_of is not None:
            # Sticky: a duplicate stays one (its reason with it).
            reason = (row.provenance or {}).get(DUPLICATE_KEY)
            if reason:
                meta["provenance"][DUPLICATE_KEY] = reason
        duplicate_of = (
            duplicate[0] if duplicate is not None else None if row is None else row.duplicate_of
        )
        if row is None:
            staged = StagedDocument(source_id, doc_id, item, sha, size, media_type, meta, now)
            conn.execute(_INSERT, _new_row(staged, meta, duplicate_of))
            self._add_revision(conn, doc_id, 1, sha, size, item.filename, now)
            outcome = ImportOutcome(ImportStatus.NEW, doc_id, 1)
        elif row.sha256 != sha:
            revision = row.revision + 1
            conn.execute(
                _UPDATE,
                dict(
                    doc_id=doc_id,
                    filename=item.filename,
                    media_type=media_type,
                    size=size,
                    sha256=sha,
                    revision=revision,
                    fingerprint=item.fingerprint,
                    updated_at=now,
                    duplicate_of=duplicate_of,
                    **meta,
                ),
            )
            self._add_revision(conn, doc_id, revision, sha, size, item.filename, now)
            outcome = ImportOutcome(ImportStatus.NEW_REVISION, doc_id, revision)
        else:
            current = {k: _normalise(getattr(row, k)) for k in meta}
            wanted = {k: _normalise(v) for k, v in meta.items()}
            changed = (
                current != wanted
                or row.filename != item.filename
                or row.media_type != media_type
                or duplicate_of != row.duplicate_of
            )
            if changed or row.fingerprint != item.fingerprint:
                conn.execute(
                    _UPDATE,
                    dict(
                        doc_id=doc_id,
                        filename=item.filename,
                        media_type=media_type,
                        size=row.size,
                        sha256=row.sha256,
                        revision=row.revision,
                        fingerprint=item.fingerprint,
                        updated_at=now if changed else row.updated_at,
                        duplicate_of=duplicate_of,
                        **meta,
                    ),
                )
            status = ImportStatus.METADATA if changed else ImportStatus.UNCHANGED
            outcome = ImportOutcome(status, doc_id, row.revision)
        if duplicate is not None:
            outcome = ImportOutcome(
                outcome.status, outcome.document_id, outcome.revision, duplicate[0], duplicate[1]
            )
        return outcome

    def _add_revision(
        self,
        conn: sa.Connection,
        doc_id: str,
        revision: int,
        sha: str,
        size: int,
        filename: str,
        now: datetime,
    ) -> None:
        conn.execute(
            _INSERT_REVISION,
            dict(
                document_id=doc_id,
                revision=revision,
                sha256=sha,
                size=size,
                filename=filename,
                imported_at=now,
            ),
        )


def _new_row(
    staged: StagedDocument, meta: dict[str, Any], duplicate_of: str | None
) -> dict[str, Any]:
    """The ``documents`` row of a document imported for the first time."""
    item = staged.item
    return dict(
        id=staged.doc_id,
        source=staged.source_id,
        external_id=item.external_id,
        import_date=staged.now,
        filename=item.filename,
        media_type=staged.media_type,
        size=staged.size,
        sha256=staged.sha,
        revision=1,
        fingerprint=item.fingerprint,
        updated_at=staged.now,
        duplicate_of=duplicate_of,
        **meta,
    )


def _insert_all_new(conn: sa.Connection, docs: list[StagedDocument]) -> list[ImportOutcome] | None:
    """The common case of a first import in a few statements for a whole batch:
    when none of ``docs`` is in the catalog yet and none can be a duplicate,
    insert them all (``executemany``); else None, and nothing was written.

    "None can be a duplicate" is judged conservatively: no undeclared
    original anywhere shares a content hash or business key with one of
    them, and no business key repeats within the batch (the same hash within
    a batch is one source's and never a duplicate). Anything else takes the
    exact path, document by document.
    """
    ids = [d.doc_id for d in docs]
    keys = [d.meta["business_key"] for d in docs if d.meta["business_key"] is not None]
    if len(set(ids)) != len(ids) or len(set(keys)) != len(keys):
        return None
    if conn.execute(_ANY_PRESENT, {"ids": ids}).first() is not None:
        return None
    shas = sorted({d.sha for d in docs})
    if conn.execute(_ANY_ORIGINAL, {"shas": shas, "keys": keys}).first() is not None:
        return None
    conn.execute(_INSERT, [_new_row(d, d.meta, None) for d in docs])
    conn.execute(
        _INSERT_REVISION,
        [
            dict(
                document_id=d.doc_id,
                revision=1,
                sha256=d.sha,
                size=d.size,
                filename=d.item.filename,
                imported_at=d.now,
            )
            for d in docs
        ],
    )
    return [ImportOutcome(ImportStatus.NEW, d.doc_id, 1) for d in docs]


class Fingerprints:
    """external id -> recorded fingerprint of one source, in sorted pages.

    A fetch asks for (nearly) every document of its source, and usually in
    sorted order (the ``folder`` source walks in code-point order of the
    external ids). So rather than loading every fingerprint into a dict -- a
    few hundred bytes per document, 200 MB for a million -- this keeps a
    *window*: the rows whose external id follows the last one asked for that
    was not covered, up to ``page`` of them. A lookup inside the window is a
    dict lookup; one past it loads the next window starting there (skipping,
    in one query, rows nobody asks for: deleted files); one before it (a
    source that yields out of order) is a point query that leaves the window
    alone. The window grows while lookups walk through it and shrinks when
    they jump around, so an unordered source does not pay for long pages it
    does not use. Memory: at most ``MAX_PAGE`` rows.

    Ordering is code-point order on both sides: Python's ``str`` comparison
    here, ``id`` under SQLite's BINARY collation (its primary-key index) and
    under ``COLLATE "C"`` on PostgreSQL (whose default collation may sort
    differently). The ids of a source all start with ``source/``, so ordering
    by ``id`` orders by external id.

    Each page is its own short read (no transaction spans the fetch, which
    writes meanwhile): a row stored after its page was read is not seen,
    which only costs that document a re-read (the importer compares hashes).
    """

    MIN_PAGE = 16
    MAX_PAGE = 2000

    def __init__(self, engine: sa.Engine, source_id: str) -> None:
        self._engine = engine
        self._prefix = f"{source_id}/"
        # "/" is followed by "0" in code-point order: every id of the source
        # lies in [prefix, source + "0").
        self._end_id = f"{source_id}0"
        ordered = documents.c.id
        if engine.dialect.name == "postgresql":
            ordered = ordered.collate("C")  # type: ignore[assignment]
        self._ordered = ordered
        self._page_size = 256
        self._rows: dict[str, str | None] = {}
        self._low: str | None = None  # the window covers [low, high]
        self._high: str | None = None  # None: to the end of the source's rows
        self._hits = 0
        self.queries = 0
        """Queries run so far (for tests and benchmarks)."""

    def get(self, external_id: str, default: str | None = None) -> str | None:
        """The recorded fingerprint of ``external_id``; ``default`` if none."""
        low = self._low
        if low is not None and low <= external_id:
            high = self._high
            if high is None or external_id <= high:
                self._hits += 1
                value = self._rows.get(external_id)
                return default if value is None else value
            # Past the window: a source walking in order used the window
            # through; one jumping around did not.
            if self._hits * 2 >= len(self._rows):
                self._page_size = min(self._page_size * 2, self.MAX_PAGE)
            else:
                self._page_size = max(self._page_size // 2, self.MIN_PAGE)
            self._load(external_id)
            return self.get(external_id, default)
        if low is None:
            self._load(external_id)
            return self.get(external_id, default)
        value = self._point(external_id)  # before the window: out of order
        return default if value is None else value

    def _load(self, start: str) -> None:
        c = documents.c
        query = (
            sa.select(c.id, c.fingerprint)
            .where(self._ordered >= self._prefix + start, self._ordered < self._end_id)
            .order_by(self._ordered)
            .limit(self._page_size)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        self.queries += 1
        cut = len(self._prefix)
        self._rows = {row.id[cut:]: row.fingerprint for row in rows}
        self._low = start
        self._high = rows[-1].id[cut:] if len(rows) == self._page_size else None
        self._hits = 0

    def _point(self, external_id: str) -> str | None:
        query = sa.select(documents.c.fingerprint).where(
            documents.c.id == self._prefix + external_id
        )
        with self._engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        self.queries += 1
        return value


def _find_original(
    conn: sa.Connection,
    doc_id: str,
    source_id: str,
    sha: str,
    key: str | None,
    imported: datetime | None,
) -> tuple[str, str] | None:
    """(id, reason) of the earliest other document this one repeats, if any.

    The same content from *another* source (a source yielding one file twice
    under two names is its own business), or the same business key from any
    document. Only originals count (never a duplicate of a duplicate), and
    only earlier ones (a document is never a duplicate of a later one).
    """
    query = _FIND_ORIGINAL[key is not None, imported is not None]
    params: dict[str, Any] = {"doc_id": doc_id, "source_id": source_id, "sha": sha}
    if key is not None:
        params["key"] = key
    if imported is not None:
        params["imported"] = imported
    row = conn.execute(query, params).first()
    if row is None:
        return None
    if row.sha256 == sha and row.source != source_id:
        return row.id, f"same content (SHA-256) as {row.id} from source {row.source}"
    return row.id, f"same seller, number, gross amount and currency as {row.id}"


def _normalise(value: Any) -> Any:
    # Tags come back from their JSON column as a list in stored order: compare
    # them as sorted lists. Everything else compares as it is: amounts are
    # Decimal on both sides (equal by value, Decimal("1.0") == Decimal("1.00")),
    # dicts compare by content.
    if isinstance(value, list):
        return sorted(value)
    return value


#: A batch is committed once it holds this many documents (or cursors reached
#: without one), ...
BATCH_DOCUMENTS = 256
#: ... or this many bytes of content, ...
BATCH_BYTES = 32 * 1024 * 1024
#: ... or its first document waited this long (a slow source's documents
#: still reach the catalog, and the exports, soon).
BATCH_SECONDS = 2.0


class ImportBatch:
    """Group commit of one source's documents (see the module docs).

    :meth:`add` writes a document's content at once (a source's file is only
    valid until it yields the next one) and keeps its row for later;
    :meth:`checkpoint` records a cursor reached without a document (a skipped
    or unchanged one). :meth:`commit` passes the blob store's durability
    barrier, then commits every row and the last cursor in one transaction.
    The cursor therefore only ever advances together with the documents
    before it. A crash before the commit leaves at most complete blobs that no
    row refers to yet; the next import finds them by their hash.
    """

    def __init__(self, catalog: Catalog, source_id: str, documents: int | None = None) -> None:
        self._catalog = catalog
        self._source_id = source_id
        self._limit = BATCH_DOCUMENTS if documents is None else documents
        self._blobs: BlobBatch = catalog.blobs.batch()
        self._entries: list[StagedDocument | tuple[str | None, datetime]] = []
        self._bytes = 0
        self._started = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        """Whether it is time to commit (see ``BATCH_*``)."""
        return (
            len(self._entries) >= self._limit
            or self._bytes >= BATCH_BYTES
            or (bool(self._entries) and time.monotonic() - self._started >= BATCH_SECONDS)
        )

    def add(self, item: SourceDocument, now: datetime, derived: Derived = _NO_DERIVED) -> None:
        """Write ``item``'s content and keep its row for :meth:`commit`.

        Raises one of :data:`DOCUMENT_ERRORS` (nothing kept) when the document
        cannot be imported.
        """
        staged = self._catalog._staged(self._source_id, item, now, derived, self._blobs.put)
        self._note()
        self._entries.append(staged)
        self._bytes += staged.size

    def checkpoint(self, cursor: str | None, now: datetime) -> None:
        """Save ``cursor`` with this batch, after the documents added before it."""
        self._note()
        self._entries.append((cursor, now))

    def _note(self) -> None:
        if not self._entries:
            self._started = time.monotonic()

    def commit(self) -> list[ImportOutcome | Exception]:
        """Commit the batch; the outcome of each added document, in order: an
        :class:`ImportOutcome`, or the error (one of :data:`DOCUMENT_ERRORS`)
        that failed that document alone. Starts a new batch."""
        entries, self._entries = self._entries, []
        self._bytes = 0
        failed = self._blobs.settle()
        results: list[ImportOutcome | Exception] = []
        catalog = self._catalog
        try:
            with catalog.engine.begin() as conn:
                cursor: tuple[str | None, datetime] | None = None
                docs = [e for e in entries if isinstance(e, StagedDocument) and e.sha not in failed]
                done = iter((_insert_all_new(conn, docs) if docs else None) or [])
                for entry in entries:
                    if not isinstance(entry, StagedDocument):
                        cursor = entry
                    elif entry.sha in failed:
                        results.append(failed[entry.sha])
                    else:
                        results.append(next(done, None) or catalog._write(conn, entry))
                        if entry.item.cursor is not None:
                            cursor = entry.item.cursor, entry.now
                if cursor is not None:
                    catalog._save_cursor(conn, self._source_id, cursor[0], cursor[1])
            return results
        except Exception:
            # Which document? One at a time tells (the error comes back then).
            return self._one_by_one(entries, failed)

    def _one_by_one(
        self,
        entries: list[StagedDocument | tuple[str | None, datetime]],
        failed: dict[str, OSError],
    ) -> list[ImportOutcome | Exception]:
        # Each document (and each cursor reached without one) in a transaction
        # of its own, as if there were no batch: the rows of the others stay.
        results: list[ImportOutcome | Exception] = []
        catalog = self._catalog
        for entry in entries:
            if not isinstance(entry, StagedDocument):
                catalog.save_cursor(self._source_id, *entry)
            elif entry.sha in failed:
                results.append(failed[entry.sha])
            else:
                try:
                    results.append(catalog._store_staged(entry))
                except DOCUMENT_ERRORS as exc:
                    results.append(exc)
        return results
