"""SFTP export target (see docs/connectors/sftp.md).

Design decisions, and why:

* Host keys are checked against a known_hosts file and an unknown key is
  *refused* with a message that tells how to trust it. Accepting a first key
  silently (trust on first use) would let a man in the middle collect every
  invoice on the first connection a freshly installed daemon makes.
* Each document is written to a hidden temporary name beside its final name
  and renamed over it (``posix-rename@openssh.com``, an atomic replace), so a
  reader never sees half a file and a re-export replaces the earlier file.
* Authentication and host key failures raise :class:`SftpAccessError`, a
  :class:`~invoicesync.plugins.TransientError`: they are configuration
  problems of the whole account, not a property of the document. Recording
  every document as *rejected* would force a manual ``invoicesync retry`` after
  the fix; as transient errors the engine backs off and the documents go out
  by themselves once the key or password is fixed (and ``check-config
  --connect`` reports the problem right away).
* A pool of SSH connections, one per export thread (an account exports on 4
  threads by default, ``default_concurrency``): paramiko's SFTP client waits
  for each reply, so one connection shared by the threads would serialise
  them, and an SSH handshake costs far more than an upload of a typical
  invoice, so each connection is kept for the whole run. New connections are
  opened one at a time, so a refused login is tried once, not once per thread.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import posixpath
import re
import secrets
import shlex
import socket
import stat
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from invoicesync.plugins import (
    CONTROL_CHARACTERS,
    MAX_COMPONENT_BYTES,
    ConfigurationError,
    ConnectorError,
    ConnectorOptions,
    ExportItem,
    ExportResult,
    PermanentError,
    RelativePath,
    Target,
    TransientError,
    split_remote_name,
)
from pydantic import Field, SecretStr, field_validator, model_validator

if TYPE_CHECKING:  # pragma: no cover - typing only
    import paramiko

__all__ = ["SftpAccessError", "SftpOptions", "SftpTarget"]

_CHUNK = 32768  # paramiko's largest SFTP write request; pipelined below
_TEMP_MARK = ".invoicesync-tmp-"
_NAME_MAX = MAX_COMPONENT_BYTES  # bytes per path component on every common server file system
# After the server refused our credentials or host key, exports fail fast with
# the same error for this long instead of logging in again for every document:
# a burst of failed logins gets the daemon's address banned (fail2ban, sshguard).
ACCESS_RETRY_S = 60.0
# Characters Windows-hosted SFTP servers refuse in file names.
_NON_PORTABLE = re.compile(r'[<>:"\\|?*]')


class SftpAccessError(TransientError):
    """The server refused us as a whole: host key, credentials or key file.

    A configuration problem rather than a property of one document, so it is
    transient: the engine retries with back-off and the documents go out once
    the configuration is fixed. The message never contains a secret.
    """


class SftpOptions(ConnectorOptions):
    """``options:`` of an ``sftp`` export account."""

    host: str = Field(min_length=1, description="Server name or address.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    username: str = Field(min_length=1, description="Login name.")
    password: SecretStr | None = Field(
        None, description="Password (use keyring:/env:/credential:, never a literal)."
    )
    private_key: RelativePath | None = Field(
        None, description="OpenSSH private key file (ed25519, ECDSA or RSA)."
    )
    private_key_passphrase: SecretStr | None = Field(
        None, description="Passphrase of an encrypted private_key."
    )
    known_hosts: RelativePath = Field(
        Path("~/.ssh/known_hosts"),
        validate_default=True,
        description="known_hosts file the server's host key must be listed in.",
    )
    path: str = Field(
        ".", description="Remote folder documents go below; relative to the login folder."
    )
    timeout: float = Field(30.0, gt=0, le=3600, description="Seconds per network operation.")
    permissions: str | None = Field(
        None, description="Octal mode for uploaded files, e.g. '0640'; default: server umask."
    )
    portable_names: bool = Field(
        False,
        description='Replace characters Windows servers refuse (<>:"\\|?*) in remote names.',
    )

    @field_validator("host", "username", "path")
    @classmethod
    def _no_control(cls, value: str) -> str:
        if CONTROL_CHARACTERS.search(value):
            raise ValueError("must not contain control characters")
        if value != value.strip():
            raise ValueError("must not start or end with white space")
        return value

    @field_validator("permissions")
    @classmethod
    def _octal(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError("expected an octal file mode such as '0640' or '600'")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> SftpOptions:
        if self.password is None and self.private_key is None:
            raise ValueError("give password or private_key (or both)")
        if self.private_key_passphrase is not None and self.private_key is None:
            raise ValueError("private_key_passphrase needs private_key")
        return self

    @property
    def mode(self) -> int | None:
        """``permissions`` as an integer mode, or None."""
        return int(self.permissions, 8) if self.permissions is not None else None


def _paramiko() -> Any:
    try:
        import paramiko
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "the sftp target needs paramiko: pip install 'invoicesync[sftp]'"
        ) from exc
    return paramiko


def _fingerprint(key: Any) -> str:
    """OpenSSH's fingerprint form, ``SHA256:<base64 without padding>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _UnknownHostKey(Exception):
    def __init__(self, key: Any) -> None:
        super().__init__("unknown host key")
        self.key = key


class _RefuseUnknownHost:
    """paramiko missing-host-key policy: never accept, say how to trust."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise _UnknownHostKey(key)


class _LocalReadError(Exception):
    """Reading the document's own content failed (not the server's fault)."""


def _truncate_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def _temp_name(name: str) -> str:
    # Hidden (leading dot) so directory watchers and people ignore it, and
    # recognisable as ours. The final name can be up to 255 bytes already,
    # so the name part is shortened to keep the temporary name legal.
    suffix = f"{_TEMP_MARK}{secrets.token_hex(6)}"
    room = _NAME_MAX - 1 - len(suffix.encode("ascii"))
    return f".{_truncate_utf8(name, room)}{suffix}"


class SftpTarget(Target[SftpOptions]):
    """Upload each document under its remote name below ``path`` on an SSH server."""

    type_name = "sftp"
    Options = SftpOptions
    description = "SSH file server over SFTP (known_hosts checked, atomic replace)"
    requires: ClassVar[dict[str, str]] = {"paramiko": "invoicesync[sftp]"}
    default_concurrency = 4

    def __init__(self, id: str, options: SftpOptions, context: Any) -> None:
        super().__init__(id, options, context)
        # Guards the pool, the stale temporaries and the access error.
        self._lock = threading.Lock()
        # Held while opening a connection: one handshake (and one failed login) at a time.
        self._connect_lock = threading.Lock()
        # Connections not in use by an export right now, each alive when put back.
        self._idle: list[_Session] = []
        # Folders known to exist on the server: saves a round trip per upload.
        self._known_dirs: set[str] = set()
        self._posix_rename = True
        # Temporary files we could not remove because the connection broke;
        # removed as soon as a new connection is up.
        self._stale: set[str] = set()
        self._root = posixpath.normpath(options.path) if options.path else "."
        self._access_error: tuple[float, SftpAccessError] | None = None

    # -- public API -----------------------------------------------------------

    @property
    def where(self) -> str:
        """``user@host:port``, for messages."""
        o = self.options
        return f"{o.username}@{self._host_label()}"

    def remote_path(self, remote_name: str) -> str:
        """The full remote path a remote name is written to (the remote reference)."""
        # The engine hands over sanitised names; this is defence in depth
        # against a bug or a plugin: nothing may leave the root, and what the
        # server would refuse anyway (over-long names) is refused for good here
        # instead of failing as a retryable server error.
        split_remote_name(remote_name, max_component_bytes=_NAME_MAX)
        if self._root == ".":
            return remote_name
        return posixpath.join(self._root, remote_name)

    def sanitize_component(self, component: str) -> str:
        """With ``portable_names``, replace what Windows SFTP servers refuse."""
        if not self.options.portable_names:
            return component
        cleaned = _NON_PORTABLE.sub("_", component).rstrip(" .")
        return cleaned or "_"

    def check(self) -> None:
        """Connect (host key and credentials), create ``path`` and write a probe file there."""
        self._drop()  # a fresh connection proves the credentials still work
        with self._lock:
            self._access_error = None
        session = self._acquire()
        probe = (
            posixpath.join(self._root, f".invoicesync-check-{secrets.token_hex(6)}")
            if self._root != "."
            else f".invoicesync-check-{secrets.token_hex(6)}"
        )
        try:
            self._makedirs(session.sftp, self._root)
            with session.sftp.open(probe, "wb") as f:
                f.write(b"invoicesync write check\n")
            session.sftp.remove(probe)
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._classify(exc, f"writing a test file in {self._root!r}", session) from None
        finally:
            self._release(session)

    def export(self, item: ExportItem) -> ExportResult:
        """Upload to a temporary name, then rename over ``item.remote_name``."""
        final = self.remote_path(item.remote_name)
        session = self._acquire()
        try:
            self._upload(session, item, final)
        except ConnectorError:
            raise
        except _LocalReadError as exc:
            raise TransientError(
                f"reading the content of {item.document.id} failed: {exc}"
            ) from None
        except Exception as exc:
            raise self._classify(exc, f"uploading {final!r}", session) from None
        finally:
            self._release(session)
        return ExportResult(remote_ref=final)

    def close(self) -> None:
        """Close the SSH connections (called when no export is running)."""
        self._drop()

    # -- connection -----------------------------------------------------------

    def _host_label(self) -> str:
        o = self.options
        return o.host if o.port == 22 else f"[{o.host}]:{o.port}"

    def _keyscan_command(self) -> str:
        o = self.options
        port = f" -p {o.port}" if o.port != 22 else ""
        return f"ssh-keyscan{port} {shlex.quote(o.host)} >> {shlex.quote(str(o.known_hosts))}"

    def _load_key(self, pm: Any) -> Any:
        o = self.options
        assert o.private_key is not None
        passphrase = (
            o.private_key_passphrase.get_secret_value().encode()
            if o.private_key_passphrase
            else None
        )
        try:
            # Positional: paramiko 5 renamed the keyword (passphrase -> password).
            return pm.PKey.from_path(o.private_key, passphrase)
        except OSError as exc:
            raise SftpAccessError(
                f"cannot read private_key {o.private_key}: {exc.strerror or exc}"
            ) from None
        except (pm.SSHException, ValueError, TypeError) as exc:
            # Wrong or missing passphrase, unsupported or corrupt key.
            # paramiko's and cryptography's texts never contain the passphrase.
            if passphrase is None and "password" in str(exc).lower():
                raise SftpAccessError(
                    f"private_key {o.private_key} is encrypted: set private_key_passphrase"
                ) from None
            raise SftpAccessError(
                f"cannot load private_key {o.private_key} (wrong passphrase or "
                f"unsupported key format): {exc}"
            ) from None

    def _acquire(self) -> _Session:
        """A live connection for this thread alone: an idle one, else a new one."""
        with self._lock:
            while self._idle:
                session = self._idle.pop()
                if session.alive():
                    return session
                session.close()
        with self._connect_lock:
            with self._lock:
                if self._access_error is not None:
                    since, error = self._access_error
                    if time.monotonic() - since < ACCESS_RETRY_S:
                        raise SftpAccessError(str(error))
                    self._access_error = None
            try:
                session = self._connect()
            except SftpAccessError as exc:
                with self._lock:
                    self._access_error = (time.monotonic(), exc)
                raise
        self._remove_stale(session)
        return session

    def _release(self, session: _Session) -> None:
        """Give a connection back to the pool, or close it if it broke."""
        if session.alive():
            with self._lock:
                self._idle.append(session)
        else:
            session.close()

    def _connect(self) -> _Session:
        pm = _paramiko()
        o = self.options
        client = pm.SSHClient()
        try:
            if o.known_hosts.exists():
                client.load_host_keys(str(o.known_hosts))
        except (OSError, pm.SSHException) as exc:
            client.close()
            reason = getattr(exc, "strerror", None) or exc
            raise SftpAccessError(
                f"cannot read known_hosts file {o.known_hosts}: {reason}"
            ) from None
        client.set_missing_host_key_policy(_RefuseUnknownHost())
        pkey = self._load_key(pm) if o.private_key is not None else None
        try:
            sock = _open_socket(o.host, o.port, o.timeout)
            client.connect(
                hostname=o.host,
                port=o.port,
                sock=sock,
                username=o.username,
                password=o.password.get_secret_value() if o.password else None,
                pkey=pkey,
                timeout=o.timeout,
                banner_timeout=o.timeout,
                auth_timeout=o.timeout,
                channel_timeout=o.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(o.timeout)
        except _UnknownHostKey as exc:
            client.close()
            raise SftpAccessError(
                f"host key for {self._host_label()} ({exc.key.get_name()} "
                f"{_fingerprint(exc.key)}) is not in known_hosts {o.known_hosts}; after "
                f"verifying the fingerprint, add it with: {self._keyscan_command()}"
            ) from None
        except pm.BadHostKeyException as exc:
            client.close()
            raise SftpAccessError(
                f"host key for {self._host_label()} does NOT match known_hosts "
                f"{o.known_hosts}: the server offered {exc.key.get_name()} "
                f"{_fingerprint(exc.key)}, known_hosts has {exc.expected_key.get_name()} "
                f"{_fingerprint(exc.expected_key)}. This is either a reinstalled server or "
                f"an attack; after verifying the new fingerprint, remove the old entry with "
                f"ssh-keygen -R {shlex.quote(self._host_label())} -f "
                f"{shlex.quote(str(o.known_hosts))} and add the new one with: "
                f"{self._keyscan_command()}"
            ) from None
        except pm.AuthenticationException as exc:
            client.close()
            methods = " and ".join(
                m
                for m, given in (("password", o.password), ("key", o.private_key))
                if given is not None
            )
            raise SftpAccessError(
                f"authentication as {o.username!r} on {self._host_label()} failed "
                f"(tried {methods}): {exc}"
            ) from None
        except (OSError, EOFError, pm.SSHException) as exc:
            client.close()
            raise TransientError(
                f"cannot connect to {self._host_label()}: {_describe(exc)}"
            ) from None
        return _Session(client, sftp)

    def _drop(self) -> None:
        """Close every idle connection and forget the folders (a new run starts afresh)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._known_dirs.clear()
        for session in idle:
            session.close()

    def _classify(self, exc: BaseException, doing: str, session: _Session) -> ConnectorError:
        """Turn a paramiko/socket error into the engine's transient/permanent kinds."""
        where = self._host_label()
        if isinstance(exc, OSError) and not isinstance(exc, (socket.timeout, ConnectionError)):
            # SFTP status replies arrive as IOError (= OSError) with errno set
            # for the two statuses paramiko maps; everything else only has text.
            if exc.errno == errno.EACCES:
                return PermanentError(f"permission denied {doing} on {where}")
            if exc.errno == errno.ENOENT:
                self._known_dirs.clear()  # a folder vanished under us
                return TransientError(f"no such file or folder {doing} on {where}")
            if session.alive():
                # "Failure" is SFTP's catch-all (disk full, quota...): worth a retry.
                return TransientError(f"server error {doing} on {where}: {_describe(exc)}")
        session.close()  # not given back to the pool
        return TransientError(f"connection to {where} lost {doing}: {_describe(exc)}")

    # -- upload ---------------------------------------------------------------

    def _makedirs(self, sftp: paramiko.SFTPClient, folder: str) -> None:
        """``mkdir -p``, remembering folders that exist."""
        if folder in ("", ".", "/") or folder in self._known_dirs:
            return
        try:
            attrs = sftp.stat(folder)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            self._makedirs(sftp, posixpath.dirname(folder))
            try:
                sftp.mkdir(folder)
            except OSError as mkdir_error:
                # Another writer may have created it meanwhile; only then go on.
                try:
                    attrs = sftp.stat(folder)
                except OSError:
                    raise mkdir_error from None
                if not stat.S_ISDIR(attrs.st_mode or 0):
                    raise
        else:
            if not stat.S_ISDIR(attrs.st_mode or 0):
                raise PermanentError(
                    f"remote {folder!r} on {self._host_label()} exists and is not a folder"
                )
        self._known_dirs.add(folder)

    def _upload(self, session: _Session, item: ExportItem, final: str) -> None:
        sftp = session.sftp
        parent, name = posixpath.split(final)
        self._makedirs(sftp, parent)
        temp = posixpath.join(parent, _temp_name(name)) if parent else _temp_name(name)
        try:
            source = item.open()
        except Exception as exc:
            raise _LocalReadError(_describe(exc)) from exc
        try:
            with source, sftp.open(temp, "wb") as remote:
                # Pipelining sends write requests without waiting for each
                # acknowledgement; close() collects them and raises on error.
                remote.set_pipelined(True)
                while chunk := _read(source):
                    if self.context.stop.is_set():
                        raise TransientError(f"shutting down: upload of {final!r} abandoned")
                    remote.write(chunk)
                if self.options.mode is not None:
                    remote.chmod(self.options.mode)
            self._rename(sftp, temp, final)
        except BaseException:
            self._remove_temp(session, temp)
            raise

    def _rename(self, sftp: paramiko.SFTPClient, temp: str, final: str) -> None:
        if self._posix_rename:
            try:
                sftp.posix_rename(temp, final)
                return
            except OSError as exc:
                if exc.errno is not None or "unsupported" not in str(exc).lower():
                    raise
                # A server without the OpenSSH extension: plain SFTP rename
                # refuses to overwrite, so remove first (a reader may briefly
                # see no file, but never half a file).
                self._posix_rename = False
        try:
            sftp.rename(temp, final)
        except OSError:
            try:
                sftp.remove(final)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            sftp.rename(temp, final)

    def _remove_temp(self, session: _Session, temp: str) -> None:
        if session.alive():
            try:
                session.sftp.remove(temp)
                return
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
            except Exception:
                pass
        with self._lock:
            self._stale.add(temp)

    def _remove_stale(self, session: _Session) -> None:
        """Remove the temporaries broken connections left, through a new connection."""
        with self._lock:
            stale = sorted(self._stale)
        for temp in stale:
            try:
                session.sftp.remove(temp)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    continue
            except Exception:
                continue
            with self._lock:
                self._stale.discard(temp)


class _Session:
    """One SSH connection and its SFTP channel, used by one export at a time."""

    def __init__(self, client: paramiko.SSHClient, sftp: paramiko.SFTPClient) -> None:
        self.client = client
        self.sftp = sftp

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        # Closing a broken connection may fail too; there is nothing left to do then.
        with contextlib.suppress(Exception):
            self.client.close()


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket with Nagle's algorithm off.

    SFTP sends many small requests and waits for each reply; with Nagle on,
    every exchange can stall on the peer's delayed ACK (40 ms on Linux), which
    made uploads of small files about 20 times slower.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read(source: IO[bytes]) -> bytes:
    try:
        return source.read(_CHUNK)
    except Exception as exc:
        raise _LocalReadError(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text
