"""The ``imap`` source: attachments of mails in one or more IMAP folders.

How it works, and why:

* **Which mails.** Per folder, every mail with a UID above the cursor's (and,
  with ``since``, whose IMAP internal date -- its arrival -- is on or after
  that day). Mails smaller than ``min_size`` cannot hold a matching
  attachment and are not downloaded at all.
* **Which parts.** Every leaf MIME part (attachments of forwarded mails
  included) whose media type matches ``media_types`` (``application/pdf`` by
  default; a part sent as ``application/octet-stream`` is judged by its file
  name's extension), whose sanitised file name matches one of
  ``filename_globs`` (if given) and whose decoded size is at least ``min_size``.
* **External id.** ``<mail key>/<part index>-<sha8>``, where the mail key is a
  hash of the ``Message-ID`` header (``mid-...``) or, for a mail without one,
  of its raw bytes (``raw-...``), and ``sha8`` is the start of the part's
  SHA-256. The id deliberately contains neither the folder nor the UID: after
  a UIDVALIDITY change (a rebuilt mailbox), or when a mail is moved to another
  imported folder, the same attachment maps to the same document and the
  catalog does not duplicate it.
* **Cursor.** JSON ``{"v": 1, "folders": {NAME: {"uidvalidity": N, "uid": U}}}``.
  The last document of each mail carries a checkpoint cursor that includes
  that mail, so an interrupted fetch resumes after the last complete mail.
  When a folder's UIDVALIDITY differs from the cursor's, the folder is
  rescanned from the start (see the external id for why that is safe).
* **after_import.** ``flag`` sets ``\\Flagged``, ``{move: FOLDER}`` moves the
  mail. Either happens only after the engine has committed every document
  of that mail to the catalog: the action runs when the generator is resumed
  after the mail's last ``yield`` (the engine commits a yielded document
  before it asks for the next). A crash between the commit and the action
  leaves the mail unflagged (it is not imported twice).
"""

from __future__ import annotations

import base64
import contextlib
import email.errors
import email.header
import email.parser
import email.policy
import email.utils
import fnmatch
import hashlib
import imaplib
import json
import mimetypes
import re
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from email.message import Message
from pathlib import Path
from typing import Any, Literal, TypeVar

from invoicesync.plugins import (
    ConnectorError,
    ConnectorOptions,
    DocumentMetadata,
    DocumentType,
    FetchResult,
    RelativePath,
    SkippedDocument,
    Source,
    SourceDocument,
    TransientError,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .._filenames import clean_text, safe_filename

__all__ = ["ImapOptions", "ImapSource", "MoveAction"]

_CURSOR_VERSION = 1
# Messages up to this size are fetched whole (several per command); larger
# ones in chunks of this size, so a single FETCH never holds more in memory.
_CHUNK = 8 * 1024 * 1024
_BATCH_COUNT = 50
# Attachments larger than this are handed to the catalog as a file.
_SPOOL_THRESHOLD = 1024 * 1024
_OCTET_STREAM = {"application/octet-stream", "binary/octet-stream", "application/x-download"}


class MoveAction(BaseModel):
    """``after_import: {move: FOLDER}``: move an imported mail to FOLDER."""

    model_config = ConfigDict(extra="forbid")

    move: str = Field(min_length=1)


class ImapOptions(ConnectorOptions):
    """Options of the ``imap`` source (see docs/connectors/imap.md)."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default 993 for ``tls``, 143 for ``starttls`` and ``none``."""
    security: Literal["tls", "starttls", "none"] = "tls"
    allow_insecure: bool = False
    """Required together with ``security: none``: the password travels in clear."""
    username: str = Field(min_length=1)
    password: SecretStr
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    since: date | None = None
    """Only mails that arrived on or after this day (IMAP ``SINCE``)."""
    media_types: list[str] = Field(
        default_factory=lambda: ["application/pdf", "application/xml", "text/xml"], min_length=1
    )
    """Media types to import; shell-style patterns such as ``image/*`` work. The
    default takes PDFs and XML e-invoices (XRechnung, UBL, Peppol)."""
    filename_globs: list[str] = Field(default_factory=list)
    """If given, an attachment's name must match one (case-insensitive)."""
    min_size: int = Field(default=0, ge=0)
    """Minimum attachment size in bytes (skips logos and signatures)."""
    after_import: Literal["nothing", "flag"] | MoveAction = "nothing"
    verify_tls: bool = True
    ca_file: RelativePath | None = None
    timeout: float = Field(default=60.0, gt=0)
    company: str | None = None
    """Company profile id given to every document of this source."""
    type: DocumentType = DocumentType.MISC
    """Document type given to every document of this source."""
    document_date: Literal["mail_date", "none"] = "mail_date"
    """``mail_date``: the day of the mail's ``Date`` header; ``none``: leave it unset."""

    @field_validator("folders", "media_types", "filename_globs")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("entries must not be empty")
        return value

    @field_validator("media_types")
    @classmethod
    def _media_type_shape(cls, value: list[str]) -> list[str]:
        for item in value:
            if "/" not in item:
                raise ValueError(f"{item!r} is not a media type such as application/pdf")
        return [item.lower() for item in value]

    @model_validator(mode="after")
    def _insecure_needs_consent(self) -> ImapOptions:
        if self.security == "none" and not self.allow_insecure:
            raise ValueError(
                "security: none sends the password unencrypted; "
                "add allow_insecure: true if that is really intended"
            )
        return self

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port or (993 if self.security == "tls" else 143)


@dataclass
class _Attachment:
    index: int
    filename: str
    media_type: str
    content: bytes | Path
    sha256: str
    size: int


T = TypeVar("T")


def imap_utf7(name: str) -> str:
    """Encode a folder name in IMAP's modified UTF-7 (RFC 3501 section 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _quote(folder: str) -> str:
    encoded = imap_utf7(folder)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: Any) -> str:
    """Server response data as one readable line."""
    parts = data if isinstance(data, list | tuple) else [data]
    out = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(part.decode("utf-8", "replace"))
        elif isinstance(part, tuple):
            out.append(_text(part[0]))
        elif part is not None:
            out.append(str(part))
    return clean_text(" ".join(out), 300)


def _uid_set(uids: list[int]) -> str:
    """A compact IMAP sequence set (``3:7,9``) for sorted UIDs."""
    ranges: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        ranges.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    ranges.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(ranges)


_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class ImapSource(Source[ImapOptions]):
    """Import matching attachments from IMAP folders (see the module docstring)."""

    type_name = "imap"
    Options = ImapOptions
    description = "attachments from IMAP mailboxes (IMAPS or STARTTLS)"

    def __init__(self, id: str, options: ImapOptions, context: Any) -> None:
        super().__init__(id, options, context)
        self._conn: imaplib.IMAP4 | None = None

    # -- connection -----------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"imap {self.options.host}:{self.options.effective_port}"

    def _scrub(self, text: str) -> str:
        # Server messages are not supposed to echo the password, but a broken
        # one might; never pass it on.
        secret = self.options.password.get_secret_value()
        return text.replace(secret, "***") if secret else text

    def _ssl_context(self) -> ssl.SSLContext:
        o = self.options
        try:
            ctx = ssl.create_default_context(cafile=str(o.ca_file) if o.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectorError(f"{self._where}: cannot load ca_file {o.ca_file}: {exc}") from None
        if not o.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect(self) -> imaplib.IMAP4:
        o = self.options
        host, port = o.host, o.effective_port
        conn: imaplib.IMAP4 | None = None
        try:
            if o.security == "tls":
                conn = imaplib.IMAP4_SSL(
                    host, port, ssl_context=self._ssl_context(), timeout=o.timeout
                )
            else:
                conn = imaplib.IMAP4(host, port, timeout=o.timeout)
                if o.security == "starttls":
                    if "STARTTLS" not in conn.capabilities:
                        raise ConnectorError(
                            f"{self._where}: the server does not offer STARTTLS; "
                            "use security: tls on its IMAPS port"
                        )
                    conn.starttls(ssl_context=self._ssl_context())
        except ssl.SSLCertVerificationError as exc:
            self._close_quietly(conn)
            raise ConnectorError(
                f"{self._where}: the server's TLS certificate is not trusted "
                f"({exc.verify_message}); give its CA as ca_file"
            ) from None
        except ConnectorError:
            self._close_quietly(conn)
            raise
        except (OSError, imaplib.IMAP4.error) as exc:
            self._close_quietly(conn)
            raise TransientError(f"{self._where}: cannot connect: {_describe(exc)}") from None
        self._login(conn)
        return conn

    def _login(self, conn: imaplib.IMAP4) -> None:
        o = self.options
        try:
            if o.password.get_secret_value().isascii() and o.username.isascii():
                conn.login(o.username, o.password.get_secret_value())
            else:
                # imaplib's LOGIN is ASCII-only; AUTHENTICATE PLAIN carries UTF-8.
                conn.authenticate(
                    "PLAIN",
                    lambda _: (
                        b"\0" + o.username.encode() + b"\0" + o.password.get_secret_value().encode()
                    ),
                )
            # Servers announce more (MOVE, UIDPLUS) after login than before;
            # imaplib only keeps the first list.
            typ, data = conn.capability()
            if typ == "OK" and data and isinstance(data[-1], bytes):
                conn.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
        except imaplib.IMAP4.abort as exc:
            self._close_quietly(conn)
            raise TransientError(
                f"{self._where}: connection lost during login: {self._scrub(_describe(exc))}"
            ) from None
        except (imaplib.IMAP4.error, OSError) as exc:
            self._close_quietly(conn)
            raise ConnectorError(
                f"{self._where}: login as {o.username!r} refused: {self._scrub(_describe(exc))}"
            ) from None

    @staticmethod
    def _close_quietly(conn: imaplib.IMAP4 | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.logout()
        with contextlib.suppress(Exception):
            conn.shutdown()

    def _call(self, what: str, fn: Callable[..., tuple[str, Any]], *args: Any) -> Any:
        """Run one IMAP command; map failures to TransientError/ConnectorError."""
        try:
            typ, data = fn(*args)
        except imaplib.IMAP4.abort as exc:
            raise TransientError(
                f"{self._where}: connection lost ({what}): {_describe(exc)}"
            ) from None
        except (OSError, EOFError) as exc:
            raise TransientError(
                f"{self._where}: connection lost ({what}): {_describe(exc)}"
            ) from None
        except imaplib.IMAP4.error as exc:
            raise ConnectorError(
                f"{self._where}: {what} failed: {self._scrub(_describe(exc))}"
            ) from None
        if typ != "OK":
            raise ConnectorError(f"{self._where}: {what} failed: {self._scrub(_text(data))}")
        return data

    def check(self) -> None:
        """Log in and open every folder (and the move target) read-only."""
        conn = self._connect()
        try:
            for folder in self.options.folders:
                self._call(f"opening folder {folder!r}", conn.select, _quote(folder), True)
            action = self.options.after_import
            if isinstance(action, MoveAction):
                self._call(
                    f"looking up move target folder {action.move!r}",
                    conn.status,
                    _quote(action.move),
                    "(UIDVALIDITY)",
                )
        finally:
            self._close_quietly(conn)

    def close(self) -> None:
        self._close_quietly(self._conn)
        self._conn = None

    # -- fetch ------------------------------------------------------------------

    def _log(self, level: str, event: str, **fields: Any) -> None:
        logger = self.context.logger
        if logger is None:
            return
        with contextlib.suppress(Exception):
            getattr(logger, level)(event, source=self.id, **fields)

    def _load_cursor(self, cursor: str | None) -> dict[str, dict[str, int]]:
        if not cursor:
            return {}
        try:
            data = json.loads(cursor)
            folders = data["folders"] if data.get("v") == _CURSOR_VERSION else None
            if not isinstance(folders, dict):
                raise ValueError("unknown cursor version")
            return {
                str(name): {"uidvalidity": int(v["uidvalidity"]), "uid": int(v["uid"])}
                for name, v in folders.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            # Rescanning is safe (stable external ids), so an unreadable
            # cursor costs time, not duplicates.
            self._log("warning", "imap.cursor_reset", reason="unreadable cursor")
            return {}

    @staticmethod
    def _dump_cursor(state: dict[str, dict[str, int]]) -> str:
        return json.dumps({"v": _CURSOR_VERSION, "folders": state}, sort_keys=True)

    def fetch(self, cursor: str | None) -> FetchResult:
        """Yield matching attachments of mails after ``cursor``; return the new cursor."""
        o = self.options
        previous = self._load_cursor(cursor)
        state = {name: previous[name] for name in o.folders if name in previous}
        tmp_dir = Path(self.context.state_dir) / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        conn = self._conn = self._connect()
        try:
            for folder in o.folders:
                if self.context.stop.is_set():
                    break
                yield from self._fetch_folder(conn, folder, state, tmp_dir)
        finally:
            self._conn = None
            self._close_quietly(conn)
        return self._dump_cursor(state)

    def _fetch_folder(
        self,
        conn: imaplib.IMAP4,
        folder: str,
        state: dict[str, dict[str, int]],
        tmp_dir: Path,
    ) -> Iterator[SourceDocument | SkippedDocument]:
        o = self.options
        readonly = o.after_import == "nothing"
        self._call(f"opening folder {folder!r}", conn.select, _quote(folder), readonly)
        _, values = conn.response("UIDVALIDITY")
        try:
            uidvalidity = int(values[-1])
        except (TypeError, ValueError, IndexError):
            raise ConnectorError(
                f"{self._where}: folder {folder!r} reports no UIDVALIDITY"
            ) from None
        known = state.get(folder)
        last_uid = 0
        if known is not None:
            if known["uidvalidity"] == uidvalidity:
                last_uid = known["uid"]
            else:
                self._log(
                    "warning",
                    "imap.uidvalidity_changed",
                    folder=folder,
                    old=known["uidvalidity"],
                    new=uidvalidity,
                    action="rescanning the folder; known attachments keep their ids",
                )
        state[folder] = {"uidvalidity": uidvalidity, "uid": last_uid}

        criteria = ["UID", f"{last_uid + 1}:*"]
        if o.since is not None:
            criteria += ["SINCE", _imap_date(o.since)]
        data = self._call(f"searching folder {folder!r}", conn.uid, "SEARCH", *criteria)
        # "N:*" always matches the highest UID, even below N.
        uids = sorted(
            uid
            for uid in (int(x) for x in b" ".join(d or b"" for d in data).split())
            if uid > last_uid
        )
        if not uids:
            return
        sizes = self._sizes(conn, uids)
        action = o.after_import

        for uid, raw in self._messages(conn, folder, uids, sizes, tmp_dir):
            if self.context.stop.is_set():
                return
            attachments: list[_Attachment] = []
            failed = False
            try:
                if raw is not None:
                    try:
                        yield from self._mail_documents(
                            folder, uid, raw, tmp_dir, attachments, state, uidvalidity
                        )
                    except ConnectorError:
                        raise
                    except Exception as exc:
                        # A mail that trips up the parser (or a bug) is that
                        # mail's failure, never the end of the run. It stays
                        # in the mailbox untouched (no flag, no move).
                        failed = True
                        yield SkippedDocument(
                            external_id=f"{clean_text(folder)}/uid-{uidvalidity}-{uid}",
                            reason=(
                                f"mail UID {uid} in {clean_text(folder)!r}: unexpected error: "
                                f"{type(exc).__name__}: {clean_text(str(exc), 300)}; "
                                "left in the mailbox"
                            ),
                        )
                    finally:
                        if isinstance(raw, Path):
                            raw.unlink(missing_ok=True)
            finally:
                for att in attachments:
                    if isinstance(att.content, Path):
                        att.content.unlink(missing_ok=True)
            state[folder] = {"uidvalidity": uidvalidity, "uid": uid}
            # Reaching this line means the generator was resumed after the
            # mail's last document, i.e. the engine committed them all.
            if attachments and action != "nothing" and not failed:
                self._after_import(conn, folder, uid, action)

    def _sizes(self, conn: imaplib.IMAP4, uids: list[int]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for i in range(0, len(uids), 500):
            chunk = uids[i : i + 500]
            data = self._call(
                "reading mail sizes", conn.uid, "FETCH", _uid_set(chunk), "(RFC822.SIZE)"
            )
            for item in data:
                line = item[0] if isinstance(item, tuple) else item
                if not isinstance(line, bytes):
                    continue
                uid_m, size_m = _FETCH_UID.search(line), _FETCH_SIZE.search(line)
                if uid_m and size_m:
                    sizes[int(uid_m.group(1))] = int(size_m.group(1))
        return sizes

    def _messages(
        self,
        conn: imaplib.IMAP4,
        folder: str,
        uids: list[int],
        sizes: dict[int, int],
        tmp_dir: Path,
    ) -> Iterator[tuple[int, bytes | Path | None]]:
        """(uid, raw message) in UID order; None for mails not worth downloading."""
        batch: list[int] = []
        batch_bytes = 0

        def flush() -> Iterator[tuple[int, bytes | Path | None]]:
            nonlocal batch_bytes
            if not batch:
                return
            fetched = self._fetch_whole(conn, batch)
            for uid in batch:
                # A mail expunged meanwhile is simply gone.
                yield uid, fetched.get(uid)
            batch.clear()
            batch_bytes = 0

        for uid in uids:
            size = sizes.get(uid)
            if size is None or size < self.options.min_size:
                yield from flush()
                yield uid, None
                continue
            if size > _CHUNK:
                yield from flush()
                yield uid, self._fetch_chunked(conn, uid, size, tmp_dir)
                continue
            if batch_bytes + size > _CHUNK or len(batch) >= _BATCH_COUNT:
                yield from flush()
            batch.append(uid)
            batch_bytes += size
        yield from flush()

    def _fetch_whole(self, conn: imaplib.IMAP4, uids: list[int]) -> dict[int, bytes]:
        data = self._call("downloading mails", conn.uid, "FETCH", _uid_set(uids), "(BODY.PEEK[])")
        out: dict[int, bytes] = {}
        for i, item in enumerate(data):
            if not isinstance(item, tuple) or len(item) != 2:
                continue
            head, body = item
            match = _FETCH_UID.search(head)
            if match is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
                # The server sent UID after the literal.
                match = _FETCH_UID.search(data[i + 1])
            if match is not None and b"BODY[]" in head:
                out[int(match.group(1))] = body
        return out

    def _fetch_chunked(self, conn: imaplib.IMAP4, uid: int, size: int, tmp_dir: Path) -> Path:
        """Download a big mail in _CHUNK pieces into a temporary file."""
        fd, name = tempfile.mkstemp(prefix="mail-", suffix=".eml", dir=tmp_dir)
        path = Path(name)
        try:
            with open(fd, "wb") as out:
                offset = 0
                while offset < size:
                    if self.context.stop.is_set():
                        raise TransientError(f"{self._where}: stopping during a download")
                    data = self._call(
                        "downloading a large mail",
                        conn.uid,
                        "FETCH",
                        str(uid),
                        f"(BODY.PEEK[]<{offset}.{_CHUNK}>)",
                    )
                    piece = next(
                        (item[1] for item in data if isinstance(item, tuple) and len(item) == 2),
                        None,
                    )
                    if not piece:
                        break
                    out.write(piece)
                    offset += len(piece)
            return path
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _mail_documents(
        self,
        folder: str,
        uid: int,
        raw: bytes | Path,
        tmp_dir: Path,
        attachments: list[_Attachment],
        state: dict[str, dict[str, int]],
        uidvalidity: int,
    ) -> Iterator[SourceDocument | SkippedDocument]:
        # compat32 rather than policy.default: the modern policy re-parses a
        # header into objects on every access, which made parsing 3x slower
        # than the IMAP transfer; encoded words are decoded by _decode_words.
        parser = email.parser.BytesParser(policy=email.policy.compat32)
        if isinstance(raw, Path):
            with raw.open("rb") as fh:
                msg = parser.parse(fh)
            key_source: Callable[[], bytes] = raw.read_bytes
        else:
            msg = parser.parsebytes(raw)
            key_source = lambda: raw  # noqa: E731
        attachments.extend(self._attachments(msg, tmp_dir))
        if not attachments:
            return
        mail_key = _mail_key(msg, key_source)
        metadata = self._metadata(msg, folder)
        for n, att in enumerate(attachments):
            last = n == len(attachments) - 1
            checkpoint = None
            if last:
                done = dict(state)
                done[folder] = {"uidvalidity": uidvalidity, "uid": uid}
                checkpoint = self._dump_cursor(done)
            yield SourceDocument(
                external_id=f"{mail_key}/{att.index}-{att.sha256[:8]}",
                filename=att.filename,
                content=att.content,
                media_type=att.media_type,
                metadata=metadata,
                cursor=checkpoint,
                fingerprint=f"imap-v1:{att.sha256}",
                # The mail's date only stands in for the document date: an
                # e-invoice's own issue date (BT-2) replaces it.
                guessed=frozenset({"document_date"}),
            )

    def _attachments(self, msg: Message, tmp_dir: Path) -> list[_Attachment]:
        o = self.options
        found: list[_Attachment] = []
        for index, part in enumerate(p for p in msg.walk() if not p.is_multipart()):
            try:
                raw_name = part.get_filename()
                if raw_name is not None:
                    raw_name = _decode_words(raw_name)
            except Exception:
                raw_name = None
            media_type = part.get_content_type().lower()
            is_attachment = raw_name is not None or part.get_content_disposition() == "attachment"
            if not is_attachment and media_type.startswith("text/"):
                continue  # the mail's own text
            if media_type in _OCTET_STREAM and raw_name:
                media_type = (mimetypes.guess_type(raw_name)[0] or media_type).lower()
            if not any(fnmatch.fnmatchcase(media_type, pat) for pat in o.media_types):
                continue
            filename = safe_filename(raw_name, index, media_type)
            if o.filename_globs and not any(
                fnmatch.fnmatchcase(filename.lower(), pat.lower()) for pat in o.filename_globs
            ):
                continue
            try:
                payload = part.get_payload(decode=True)
            except Exception:
                payload = None
            if not isinstance(payload, bytes) or len(payload) < max(o.min_size, 1):
                continue
            digest = hashlib.sha256(payload).hexdigest()
            content: bytes | Path = payload
            if len(payload) > _SPOOL_THRESHOLD:
                fd, name = tempfile.mkstemp(prefix="att-", dir=tmp_dir)
                with open(fd, "wb") as out:
                    out.write(payload)
                content = Path(name)
            found.append(_Attachment(index, filename, media_type, content, digest, len(payload)))
        return found

    def _metadata(self, msg: Message, folder: str) -> DocumentMetadata:
        o = self.options
        fields: dict[str, str] = {"mail_folder": clean_text(folder)}
        sender = _header(msg, "From")
        if sender:
            fields["mail_from"] = sender
        mail_date: datetime | None = None
        try:
            mail_date = email.utils.parsedate_to_datetime(str(msg["Date"]))
        except (TypeError, ValueError, IndexError):
            mail_date = None
        if mail_date is not None:
            fields["mail_date"] = mail_date.isoformat()
        subject = _header(msg, "Subject")
        return DocumentMetadata(
            company=o.company,
            type=o.type,
            document_date=mail_date.date()
            if mail_date and o.document_date == "mail_date"
            else None,
            note=subject or None,
            fields=fields,
        )

    def _after_import(
        self, conn: imaplib.IMAP4, folder: str, uid: int, action: Literal["flag"] | MoveAction
    ) -> None:
        try:
            if action == "flag":
                self._call(
                    "flagging a mail", conn.uid, "STORE", str(uid), "+FLAGS.SILENT", r"(\Flagged)"
                )
            elif isinstance(action, MoveAction):
                target = _quote(action.move)
                if "MOVE" in conn.capabilities:
                    self._call("moving a mail", conn.uid, "MOVE", str(uid), target)
                else:
                    self._call("copying a mail", conn.uid, "COPY", str(uid), target)
                    self._call(
                        "marking a moved mail deleted",
                        conn.uid, "STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)",
                    )  # fmt: skip
                    if "UIDPLUS" in conn.capabilities:
                        self._call("expunging a moved mail", conn.uid, "EXPUNGE", str(uid))
        except TransientError:
            raise
        except ConnectorError as exc:
            # The documents are safely in the catalog; a failed flag/move must
            # not stop the import, but it must be visible.
            self._log("warning", "imap.after_import_failed", folder=folder, uid=uid, error=str(exc))


def _describe(exc: BaseException) -> str:
    # imaplib raises its errors with the server's bytes as the argument.
    arg = exc.args[0] if len(exc.args) == 1 else None
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(exc)
    text = text or type(exc).__name__
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"timed out ({text})"
    return clean_text(text, 300)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _imap_date(day: date) -> str:
    """``1-Mar-2026``: IMAP's date format, independent of the process locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words (``=?utf-8?q?...?=``); leave anything broken as is."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        return value


def _header(msg: Message, name: str) -> str:
    value = msg[name]
    if value is None:
        return ""
    return clean_text(_decode_words(str(value)))


def _mail_key(msg: Message, raw: Callable[[], bytes]) -> str:
    try:
        message_id = str(msg["Message-ID"] or "").strip()
    except Exception:
        message_id = ""
    if message_id:
        return "mid-" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:24]
    return "raw-" + hashlib.sha256(raw()).hexdigest()[:24]
