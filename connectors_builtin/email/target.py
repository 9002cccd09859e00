"""E-mail export target: one message per document, the file attached (docs/connectors/email.md).

This is how lexoffice, sevDesk, Candis and DATEV Unternehmen online take
receipts: each gives an inbox address, and every mail's attachment becomes a
document there.

SMTP cannot promise exactly-once delivery: a connection that breaks after the
final ``.`` but before the server's reply leaves us not knowing whether the
mail went out. Two things keep duplicates away:

* the Message-ID is derived from account, document and content hash, so the
  same revision always carries the same Message-ID and receivers (and mail
  clients) that de-duplicate on it see one message;
* every Message-ID the server accepted is appended (fsync'd) to a small log in
  the connector's state folder, and exporting a revision whose Message-ID is
  logged sends nothing and reports the same remote reference. This is what
  makes an engine re-export after a crash harmless.

Errors: SMTP 4xx replies and network trouble are transient, 5xx replies are
permanent (the server's reply text becomes the rejection reason). Bad
credentials, missing STARTTLS and untrusted certificates raise
:class:`EmailAccessError` (transient: a configuration problem of the whole
account, not of the document -- see the sftp target for the same reasoning).
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import email.utils
import hashlib
import ipaddress
import os
import re
import secrets
import smtplib
import socket
import ssl
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from invoicesync.plugins import (
    CONTROL_CHARACTERS,
    ConnectorError,
    ConnectorOptions,
    ExportItem,
    ExportResult,
    PermanentError,
    RelativePath,
    Target,
    TransientError,
)
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from .templates import Template, document_values, header_safe

__all__ = ["EmailAccessError", "EmailOptions", "EmailTarget", "message_id"]

DEFAULT_SUBJECT = "{type} {number} from {company} ({document_date})"
DEFAULT_BODY = (
    "Attached: {attachment}\n"
    "\n"
    "Document: {id}\n"
    "Type: {type}\n"
    "Company: {company}\n"
    "Number: {number}\n"
    "Date: {document_date}\n"
    "Gross amount: {gross_amount} {currency}\n"
    "\n"
    "Sent by invoicesync.\n"
)
_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?)[bB]?\s*$")
# An idle connection is probed with NOOP before reuse: servers drop idle
# clients after a while (Postfix: 300 s) and we'd rather reconnect than fail.
_IDLE_PROBE_S = 10.0
# After the server refused our credentials (or TLS), exports fail fast with the
# same error for this long instead of logging in again for every document:
# providers lock accounts after a burst of failed logins.
ACCESS_RETRY_S = 60.0
_UNSAFE_NAME = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


class EmailAccessError(TransientError):
    """The server refused us as a whole: credentials, STARTTLS or its certificate."""


def _parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 20MB or a number of bytes")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError("expected a size such as 20MB, 500KB or a number of bytes")
        number, unit, binary = match.groups()
        base = 1024 if binary else 1000
        size = int(float(number) * base ** " kmg".index(unit.lower() or " "))
    if size <= 0:
        raise ValueError("must be positive")
    return size


def _address(value: str) -> str:
    if CONTROL_CHARACTERS.search(value):
        raise ValueError(f"{value!r}: control characters are not allowed")
    _, addr = email.utils.parseaddr(value)
    if not addr or "@" not in addr or " " in addr or addr.startswith("@") or addr.endswith("@"):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EmailOptions(ConnectorOptions):
    """``options:`` of an ``email`` export account."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = Field(min_length=1, description="SMTP server.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Default: 587 (starttls), 465 (tls), 25 (none)."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (submission, 587), tls (implicit, 465) or none."
    )
    allow_insecure: bool = Field(
        False, description="Must be true for security: none (mail crosses the network in clear)."
    )
    username: str | None = Field(None, description="SMTP AUTH user; no AUTH when absent.")
    password: SecretStr | None = Field(None, description="SMTP AUTH password (keyring:/env:/...).")
    from_: str = Field(alias="from", description="Sender address, optionally 'Name <addr>'.")
    to: list[str] = Field(min_length=1, description="Recipient addresses.")
    cc: list[str] = Field(default_factory=list, description="Further recipients (Cc header).")
    subject: str = Field(DEFAULT_SUBJECT, description="Subject template (SPEC §3 placeholders).")
    body: str = Field(DEFAULT_BODY, description="Plain-text body template.")
    max_size: int = Field(
        20_000_000, description="Largest attachment sent (e.g. 20MB); bigger ones are rejected."
    )
    timeout: float = Field(60.0, gt=0, le=3600, description="Seconds per SMTP operation.")
    ca_file: RelativePath | None = Field(
        None, description="PEM file of CA certificates to trust instead of the system's."
    )
    helo_name: str | None = Field(
        None, description="Name sent in EHLO; default: this machine's host name."
    )

    @field_validator("to", "cc", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @field_validator("from_")
    @classmethod
    def _from_address(cls, value: str) -> str:
        return _address(value)

    @field_validator("subject", "body")
    @classmethod
    def _template(cls, value: str) -> str:
        Template(value)  # raises ValueError naming the problem
        return value

    @field_validator("max_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return _parse_size(value)

    @field_validator("host", "username", "helo_name")
    @classmethod
    def _no_control(cls, value: str | None) -> str | None:
        if value is not None and (CONTROL_CHARACTERS.search(value) or value != value.strip()):
            raise ValueError("must not contain control characters or surrounding spaces")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmailOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together (give both or neither)")
        if self.security == "none":
            if not self.allow_insecure:
                raise ValueError(
                    "security: none sends mail unencrypted; use starttls or tls, or set "
                    "allow_insecure: true (for a relay on this machine)"
                )
            if self.username is not None and not _is_loopback(self.host):
                raise ValueError(
                    "security: none with a password would send it in clear over the network; "
                    "use starttls or tls"
                )
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.security]


def message_id(account: str, document_id: str, sha256: str) -> str:
    """The deterministic Message-ID of one revision of a document in one account."""
    digest = hashlib.sha256(f"{account}\n{document_id}\n{sha256}".encode()).hexdigest()
    return f"<{sha256[:8]}.{digest[:24]}@invoicesync>"


class _SentLog:
    """Message-IDs the server accepted, one per line, appended and fsync'd."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ids: set[str] | None = None

    def _load(self) -> set[str]:
        if self._ids is None:
            try:
                self._ids = set(self.path.read_text(encoding="ascii").split())
            except FileNotFoundError:
                self._ids = set()
        return self._ids

    def __contains__(self, mid: str) -> bool:
        return mid in self._load()

    def add(self, mid: str) -> None:
        ids = self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{mid}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        ids.add(mid)


class EmailTarget(Target[EmailOptions]):
    """Send each document as the attachment of one mail."""

    type_name = "email"
    Options = EmailOptions
    description = "One mail per document with the file attached (SMTP, STARTTLS or TLS)"

    def __init__(self, id: str, options: EmailOptions, context: Any) -> None:
        super().__init__(id, options, context)
        self._lock = threading.Lock()
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._subject = Template(options.subject)
        self._body = Template(options.body)
        self._sent = _SentLog(Path(context.state_dir) / "sent-message-ids")
        self._access_error: tuple[float, EmailAccessError] | None = None

    # -- public API -----------------------------------------------------------

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.options.host}:{self.options.effective_port}"

    def sanitize_component(self, component: str) -> str:
        """Attachment names end up on receivers' disks: drop what Windows refuses."""
        return _UNSAFE_NAME.sub("_", component).rstrip(" .") or "_"

    def check(self) -> None:
        """Connect, secure the connection, log in, and have the sender and every recipient accepted.

        Sends nothing: the transaction is reset after ``RCPT TO``.
        """
        with self._lock:
            self._drop()
            self._access_error = None  # an explicit check always tries afresh
            smtp = self._connect()
            try:
                code, reply = smtp.mail(self._envelope_from())
                if code != 250:
                    raise smtplib.SMTPSenderRefused(code, reply, self._envelope_from())
                for rcpt in self._recipients():
                    code, reply = smtp.rcpt(rcpt)
                    if code not in (250, 251):
                        raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
                smtp.rset()
            except Exception as exc:
                raise self._classify(exc, "checking sender and recipients") from None
            finally:
                self._drop()

    def build_message(self, item: ExportItem, content: bytes) -> EmailMessage:
        """The mail for one document (exposed for tests and previews)."""
        values = document_values(item.document, item.remote_name, self.id)
        values["attachment"] = self.sanitize_component(values["attachment"])
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.options.from_
        msg["To"] = ", ".join(self.options.to)
        if self.options.cc:
            msg["Cc"] = ", ".join(self.options.cc)
        msg["Subject"] = header_safe(self._subject.render(values))
        msg["Date"] = email.utils.formatdate(usegmt=True)
        msg["Message-ID"] = self.message_id(item)
        # The full remote name, for receivers that sort by it (and for tests);
        # the attachment itself only carries the last component.
        msg["X-Invoicesync-Name"] = header_safe(item.remote_name)
        msg.set_content(self._body.render(values))
        maintype, _, subtype = (item.document.media_type or "").partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            content,
            maintype=maintype,
            subtype=subtype,
            filename=values["attachment"],
        )
        return msg

    def message_bytes(self, item: ExportItem, content: bytes) -> bytes:
        """The mail as sent: :meth:`build_message`, serialised with CRLF line ends.

        The stdlib email generator re-splits and re-joins every line of the
        base64 attachment, which costs more than the whole SMTP exchange on a
        fast link (about 18 ms for 50 KB). So the attachment part is built
        with a random placeholder payload, the message serialised, and the
        placeholder replaced by the base64 text computed in C. Headers and
        MIME structure stay the email package's work.
        """
        msg = self.build_message(item, b"")
        placeholder = f"invoicesync-attachment-{secrets.token_hex(16)}"
        attachment = next(iter(msg.iter_attachments()))
        attachment.set_payload(placeholder + "\n")
        head = msg.as_bytes()
        token = placeholder.encode("ascii")
        if head.count(token) != 1:  # pragma: no cover - a 128-bit random token
            return self.build_message(item, content).as_bytes()
        encoded = base64.encodebytes(content).replace(b"\n", b"\r\n").rstrip(b"\r\n")
        return head.replace(token, encoded, 1)

    def message_id(self, item: ExportItem) -> str:
        """The Message-ID of this revision in this account (the remote reference)."""
        return message_id(self.id, item.document.id, item.document.sha256)

    def export(self, item: ExportItem) -> ExportResult:
        """Send one mail; a revision already accepted by the server is not sent again."""
        mid = self.message_id(item)
        limit = self.options.max_size
        if item.document.size > limit:
            raise PermanentError(
                f"{item.document.id} is {item.document.size} bytes, more than max_size "
                f"{limit} of account {self.id}"
            )
        with self._lock:
            if mid in self._sent:
                return ExportResult(remote_ref=mid)
            content = self._read(item, limit)
            data = self.message_bytes(item, content)
            smtp = self._ready()
            try:
                refused = smtp.sendmail(self._envelope_from(), self._recipients(), data)
            except Exception as exc:
                raise self._classify(exc, f"sending {item.document.id}") from None
            finally:
                self._last_used = time.monotonic()
            if refused:
                # Some recipients have the mail already: say so, so that the
                # rejection reason tells the whole story.
                raise self._classify(
                    smtplib.SMTPRecipientsRefused(refused),
                    f"sending {item.document.id} (accepted for the other recipients)",
                )
            self._sent.add(mid)
        return ExportResult(remote_ref=mid)

    def close(self) -> None:
        """QUIT the SMTP connection."""
        with self._lock:
            self._drop()

    # -- internals ------------------------------------------------------------

    def _envelope_from(self) -> str:
        return email.utils.parseaddr(self.options.from_)[1]

    def _recipients(self) -> list[str]:
        return [email.utils.parseaddr(a)[1] for a in [*self.options.to, *self.options.cc]]

    def _read(self, item: ExportItem, limit: int) -> bytes:
        try:
            chunks: list[bytes] = []
            total = 0
            with item.open() as source:
                # Loop: a raw stream may return short reads before the end.
                while total <= limit and (chunk := source.read(min(1 << 20, limit + 1 - total))):
                    chunks.append(chunk)
                    total += len(chunk)
            content = b"".join(chunks)
        except Exception as exc:
            raise TransientError(
                f"reading the content of {item.document.id} failed: {exc}"
            ) from None
        if len(content) > limit:
            raise PermanentError(
                f"{item.document.id} is larger than max_size {limit} of account {self.id}"
            )
        return content

    def _tls_context(self) -> ssl.SSLContext:
        ca = self.options.ca_file
        try:
            return ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise EmailAccessError(f"cannot load ca_file {ca}: {exc}") from None

    def _connect(self) -> smtplib.SMTP:
        o = self.options
        helo = o.helo_name or socket.gethostname() or "localhost"
        smtp: smtplib.SMTP | None = None
        try:
            if o.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    o.host,
                    o.effective_port,
                    local_hostname=helo,
                    timeout=o.timeout,
                    context=self._tls_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    o.host, o.effective_port, local_hostname=helo, timeout=o.timeout
                )
            # Nagle's algorithm plus the server's delayed ACK stalls each SMTP
            # command/reply exchange by up to 40 ms; mails are many small writes.
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if o.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise EmailAccessError(
                        f"{self.where} does not offer STARTTLS; use security: tls if it "
                        f"expects TLS from the start (usually port 465)"
                    )
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if o.username is not None and o.password is not None:
                smtp.login(o.username, o.password.get_secret_value())
        except Exception as exc:
            if smtp is not None:
                with contextlib.suppress(Exception):
                    smtp.close()
            if isinstance(exc, ConnectorError):
                raise
            raise self._classify(exc, "connecting") from None
        self._smtp = smtp
        self._last_used = time.monotonic()
        return smtp

    def _ready(self) -> smtplib.SMTP:
        """The open connection, probed with NOOP when idle for a while; else a new one."""
        smtp = self._smtp
        if smtp is not None and time.monotonic() - self._last_used > _IDLE_PROBE_S:
            try:
                if smtp.noop()[0] != 250:
                    self._drop()
            except Exception:
                self._drop()
        if self._smtp is not None:
            return self._smtp
        if self._access_error is not None:
            since, error = self._access_error
            if time.monotonic() - since < ACCESS_RETRY_S:
                raise EmailAccessError(str(error))
            self._access_error = None
        try:
            return self._connect()
        except EmailAccessError as exc:
            self._access_error = (time.monotonic(), exc)
            raise

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            # QUIT may fail on a broken connection; close() happens regardless.
            with contextlib.suppress(Exception):
                smtp.quit()
            with contextlib.suppress(Exception):
                smtp.close()

    def _classify(self, exc: BaseException, doing: str) -> ConnectorError:
        """SMTP replies and socket errors → the engine's transient/permanent kinds."""
        where = self.where
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            self._drop()
            return EmailAccessError(
                f"authentication as {self.options.username!r} on {where} failed: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}"
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            self._drop()
            return EmailAccessError(f"{where} {doing}: {exc}")
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            parts = [
                f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in exc.recipients.items()
            ]
            detail = f"recipients refused by {where} {doing}: " + "; ".join(parts)
            if any(code >= 500 for code, _ in exc.recipients.values()):
                return PermanentError(detail)
            return TransientError(detail)
        if isinstance(exc, smtplib.SMTPResponseException):
            detail = f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)} {doing}"
            if exc.smtp_code == 421 or not 400 <= exc.smtp_code < 600:
                self._drop()  # 421: the server is closing the connection
            if 500 <= exc.smtp_code < 600:
                return PermanentError(detail)
            return TransientError(detail)
        if isinstance(exc, ssl.SSLCertVerificationError):
            self._drop()
            return EmailAccessError(
                f"TLS certificate of {where} not trusted ({exc.verify_message}); "
                f"set ca_file if it uses a private CA"
            )
        self._drop()
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientError(f"{where} closed the connection {doing}")
        if isinstance(exc, OSError):
            return TransientError(f"network error with {where} {doing}: {exc.strerror or exc}")
        return TransientError(f"unexpected error with {where} {doing}: {type(exc).__name__}: {exc}")


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", errors="replace")
    return " ".join(reply.split())
