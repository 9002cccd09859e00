"""The catalog: every imported document, its revisions, and source cursors.

``Catalog.store`` is the one way documents enter: the content goes to the blob
store first, then the row, its revision and the source's checkpoint cursor are
committed in one transaction. A crash before the commit loses nothing the
source cannot give again; a crash after it leaves a consistent row.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from invoicesync.plugins.models import Document, DocumentMetadata, SourceDocument

from .blobs import BlobStore
from .schema import document_revisions, documents, source_cursors

_METADATA_FIELDS = tuple(DocumentMetadata.model_fields)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def document_id(source_id: str, external_id: str) -> str:
    return f"{source_id}/{external_id}"


def validate_external_id(external_id: str) -> None:
    if not external_id or len(external_id) > 500 or _CONTROL.search(external_id):
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
    data = dict(row._mapping)
    data.pop("fingerprint", None)
    data.pop("updated_at", None)
    return Document.model_validate(data)


class Catalog:
    """Documents in the database plus their content in the blob store."""

    def __init__(self, engine: sa.Engine, blobs: BlobStore) -> None:
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

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(documents)).scalar_one())

    def cursor(self, source_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(source_cursors.c.cursor).where(source_cursors.c.source == source_id)
            ).scalar_one_or_none()

    def fingerprints(self, source_id: str) -> dict[str, str]:
        """external id -> fingerprint for a source's documents that have one."""
        query = sa.select(documents.c.external_id, documents.c.fingerprint).where(
            documents.c.source == source_id, documents.c.fingerprint.is_not(None)
        )
        with self.engine.connect() as conn:
            return {row.external_id: row.fingerprint for row in conn.execute(query)}

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

    def store(self, source_id: str, item: SourceDocument, now: datetime) -> ImportOutcome:
        """Add or update one document (and save its checkpoint) in one transaction.

        Safe against another process storing the same document at the same
        moment: the loser of the race (its insert of the row or of the
        revision violates a key) starts over and finds the winner's row,
        which makes its own write an update or nothing at all.
        """
        validate_external_id(item.external_id)
        doc_id = document_id(source_id, item.external_id)
        sha, size = self.blobs.put(item.content)
        media_type = (
            item.media_type or mimetypes.guess_type(item.filename)[0] or "application/octet-stream"
        )
        meta = _metadata_columns(item.metadata)
        for attempt in range(1, self.STORE_ATTEMPTS + 1):
            try:
                return self._store(source_id, doc_id, item, sha, size, media_type, meta, now)
            except sa.exc.IntegrityError:
                if attempt == self.STORE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _store(
        self,
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
        with self.engine.begin() as conn:
            row = conn.execute(_SELECT_ONE, {"doc_id": doc_id}).first()
            if row is None:
                conn.execute(
                    _INSERT,
                    dict(
                        id=doc_id,
                        source=source_id,
                        external_id=item.external_id,
                        import_date=now,
                        filename=item.filename,
                        media_type=media_type,
                        size=size,
                        sha256=sha,
                        revision=1,
                        fingerprint=item.fingerprint,
                        updated_at=now,
                        **meta,
                    ),
                )
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
                            **meta,
                        ),
                    )
                status = ImportStatus.METADATA if changed else ImportStatus.UNCHANGED
                outcome = ImportOutcome(status, doc_id, row.revision)
            if item.cursor is not None:
                self._save_cursor(conn, source_id, item.cursor, now)
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


def _normalise(value: Any) -> Any:
    # JSON columns come back as lists/dicts, amounts as Decimal: compare as text
    # where representations differ but values do not (Decimal("1.0") vs "1.0").
    if isinstance(value, list):
        return sorted(value)
    return value
