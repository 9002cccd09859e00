"""The ``rclone`` export target: any remote rclone knows (Dropbox, Drive, OneDrive, Box...).

By default (``persistent: true``) one ``rclone rcd`` runs for the target's
lifetime (see :mod:`.rcd`) and each export uploads the content to it under a
temporary name (``operations/uploadfile``), then renames it over the final
name (``operations/movefile``); an account exports on 8 threads by default
(``default_concurrency``), which rclone serves in parallel.

With ``persistent: false`` each export instead streams the content into
``rclone rcat`` under a temporary name in the destination folder, then
``rclone moveto`` renames it over the final name (two rclone processes per
document). Backends write in place (the local backend of rclone < 1.63 does), so
the temporary name is what keeps half a file from ever showing under the
real name; ``moveto`` is a server-side rename or move where the backend has
one (local, WebDAV, Drive, Dropbox, OneDrive, S3 copy) and copy-then-delete
elsewhere. If the content breaks off, rclone is killed *before* it sees the
end of its input (so it never stores the truncated stream as complete) and
the temporary file is deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from typing import IO

from invoicesync.plugins import (
    ConnectorContext,
    ConnectorOptions,
    ExportItem,
    ExportResult,
    PermanentError,
    RelativePath,
    Target,
    TransientError,
    split_remote_name,
)
from pydantic import Field, SecretStr, field_validator

from .._remote import (
    ContentReadError,
    Duration,
    replace_chars,
    short_reason,
    spooled_content,
)
from .rcd import RcdServer

__all__ = ["EXIT_CODES", "RcloneOptions", "RcloneTarget", "classify_exit"]

#: Characters replaced in names: the union of what Windows, OneDrive, Dropbox
#: and Nextcloud refuse. rclone would otherwise encode them per backend into
#: look-alike full-width characters, so one document would get a different
#: name on every cloud.
FORBIDDEN_CHARS = '\\:*?"<>|'
_CHUNK = 256 * 1024

#: rclone's documented exit codes (``rclone help`` / docs "Exit Code").
EXIT_CODES = {
    1: "error not otherwise categorised",
    2: "syntax or usage error",
    3: "directory not found",
    4: "file not found",
    5: "temporary error",
    6: "less serious error (not retried)",
    7: "fatal error",
    8: "transfer limit (--max-transfer) reached",
    9: "no files transferred",
    10: "duration limit (--max-duration) reached",
}
_TRANSIENT_EXITS = {5, 8, 10}
# Exit 1 covers everything rclone did not categorise, network failures
# included; these messages mark the ones that retrying will not fix.
_PERMANENT_TEXT = re.compile(
    r"didn't find section in config file|couldn't decrypt config|config file .*not found"
    r"|\b(400|401|403|404|405|409|413|414|415|507)\b|unauthori[sz]ed|forbidden"
    r"|permission denied|access denied|insufficient storage|quota|too large"
    r"|file name too long|invalid (argument|name|character)|not supported"
    r"|unknown (flag|command|shorthand)|NOTICE: Config file .* not found",
    re.IGNORECASE,
)
_TRANSIENT_TEXT = re.compile(
    r"\b(429|500|502|503|504)\b|timeout|timed out|connection (refused|reset)"
    r"|no such host|temporar|too many requests|unexpected EOF|broken pipe",
    re.IGNORECASE,
)
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\s+")


class RcloneOptions(ConnectorOptions):
    """``options:`` of an ``rclone`` export."""

    remote: str
    """``NAME:path`` of a remote configured in rclone.conf (``NAME:`` is its root)."""
    config: RelativePath | None = None
    """rclone.conf to use; default: rclone's own lookup (``$RCLONE_CONFIG``, ~/.config/rclone)."""
    config_password: SecretStr | None = None
    """Password of an encrypted rclone.conf (passed as ``RCLONE_CONFIG_PASS``)."""
    rclone: str = "rclone"
    """The rclone program: a name looked up in ``$PATH`` or a path."""
    extra_args: list[str] = Field(default_factory=list)
    """Further global flags, e.g. ``["--bwlimit", "2M"]``."""
    timeout: Duration = 60.0
    """Seconds to wait for connecting and for the server to answer (rclone's I/O timeout)."""
    transfer_timeout: Duration = 900.0
    """Seconds one rclone run (or one upload in persistent mode) may take in all."""
    persistent: bool = True
    """Keep one ``rclone rcd`` running and send documents to it over loopback HTTP
    (the default), instead of starting rclone twice per document (``false``:
    ~70 times slower for bulk exports, but no process outlives an export)."""

    @field_validator("remote")
    @classmethod
    def _check_remote(cls, value: str) -> str:
        value = value.strip()
        name, sep, path = value.partition(":")
        if value.startswith(":"):
            # On-the-fly remotes (``:local:/x``, ``:webdav,url=...:``) are fine.
            name, sep, path = value[1:].partition(":")
        if not sep or not name or "/" in name or "\\" in name:
            raise ValueError("expected NAME:path of an rclone remote, e.g. gdrive:Invoices")
        if any(p in (".", "..") for p in path.split("/")):
            raise ValueError("must not contain '.' or '..' components")
        return value.rstrip("/") if not value.endswith(":") else value

    @field_validator("extra_args")
    @classmethod
    def _check_args(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in ("--config", "--password-command", "--ask-password"):
                raise ValueError(f"{flag} is set by invoicesync; use the config options instead")
        return value

    @field_validator("config")
    @classmethod
    def _check_config(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"rclone config file {value} does not exist")
        return value


class RcloneTarget(Target[RcloneOptions]):
    """Exports documents through the ``rclone`` program."""

    type_name = "rclone"
    Options = RcloneOptions
    description = "any rclone remote (Dropbox, Google Drive, OneDrive, Box, ...)"
    default_concurrency = 8

    def __init__(self, id: str, options: RcloneOptions, context: ConnectorContext) -> None:
        super().__init__(id, options, context)
        self._program: str | None = None
        self._rcd: RcdServer | None = None
        # The export threads share one rclone rcd: only one of them may start it.
        self._rcd_lock = threading.Lock()

    def sanitize_component(self, component: str) -> str:
        """Replace ``\\ : * ? " < > |`` and trailing dots/spaces (unportable across clouds)."""
        return replace_chars(component, FORBIDDEN_CHARS, strip_trailing=". ")

    def check(self) -> None:
        """Create the remote folder, then write and delete a probe file."""
        probe = f".invoicesync-check-{uuid.uuid4().hex[:12]}"
        if self.options.persistent:
            rcd = self.rcd
            rcd.call("operations/mkdir", {"fs": self.options.remote, "remote": ""})
            rcd.upload(self.options.remote, "", probe, _BytesSource(b"invoicesync write check\n"))
            rcd.call("operations/deletefile", {"fs": self.options.remote, "remote": probe})
            return
        self._run(["mkdir", self.options.remote], what="mkdir")
        self._rcat(self._join([probe]), _BytesSource(b"invoicesync write check\n"))
        self._run(["deletefile", self._join([probe])], what="deletefile")

    def export(self, item: ExportItem) -> ExportResult:
        parts = split_remote_name(item.remote_name)
        temp_name = f".invoicesync-{uuid.uuid4().hex[:16]}.tmp"
        if self.options.persistent:
            self._export_rcd(item, parts, temp_name)
            return ExportResult(self._join(parts))
        final = self._join(parts)
        temp = self._join([*parts[:-1], temp_name])
        try:
            with item.open() as stream:
                self._rcat(temp, stream)
            self._run(["moveto", temp, final], what="moveto")
        except BaseException:
            self._discard(temp)
            raise
        return ExportResult(final)

    def close(self) -> None:
        with self._rcd_lock:
            if self._rcd is not None:
                self._rcd.close()
                self._rcd = None

    # -- persistent mode: one rclone rcd ----------------------------------------

    @property
    def rcd(self) -> RcdServer:
        rcd = self._rcd
        if rcd is not None and rcd.alive:
            return rcd
        with self._rcd_lock:
            if self._rcd is not None and not self._rcd.alive:
                self._rcd.close()  # it died (OOM, killed): start a new one
                self._rcd = None
            if self._rcd is None:
                self._rcd = RcdServer(
                    self._command([]),
                    self._env(),
                    timeout=self.options.timeout,
                    transfer_timeout=self.options.transfer_timeout,
                    classify=classify_message,
                )
            return self._rcd

    def _export_rcd(self, item: ExportItem, parts: list[str], temp_name: str) -> None:
        fs = self.options.remote
        folder = "/".join(parts[:-1])
        temp = "/".join([*parts[:-1], temp_name])
        rcd = self.rcd
        try:
            # Read the whole content locally first: if it breaks half-way,
            # nothing has reached rclone. (rcd may still be writing an aborted
            # upload when our clean-up arrives, which would leave the
            # temporary file behind.)
            with item.open() as stream, spooled_content(stream, self.context) as spooled:
                rcd.upload(fs, folder, temp_name, _StoppableSource(spooled, self.context.stop))
            rcd.call(
                "operations/movefile",
                {"srcFs": fs, "srcRemote": temp, "dstFs": fs, "dstRemote": "/".join(parts)},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                rcd.call("operations/deletefile", {"fs": fs, "remote": temp})
            raise

    # -- running rclone -----------------------------------------------------------

    def _join(self, parts: list[str]) -> str:
        remote = self.options.remote
        sep = "" if remote.endswith(":") else "/"
        return remote + sep + "/".join(parts)

    @property
    def program(self) -> str:
        if self._program is None:
            found = shutil.which(self.options.rclone)
            if found is None:
                raise PermanentError(
                    f"rclone program {self.options.rclone!r} not found "
                    "(apt-get install rclone, or set the rclone option to its path)"
                )
            self._program = found
        return self._program

    def _command(self, args: list[str]) -> list[str]:
        o = self.options
        flags = [
            "--ask-password=false",
            "--contimeout",
            f"{o.timeout:g}s",
            "--timeout",
            f"{o.timeout:g}s",
            # The daemon retries with back-off; rclone's own whole-command
            # retries would only repeat a failed upload without telling us.
            "--retries",
            "1",
            "--low-level-retries",
            "2",
        ]
        if o.config is not None:
            flags += ["--config", str(o.config)]
        return [self.program, *flags, *o.extra_args, *args]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.options.config_password is not None:
            # In the environment, not on the command line: argv is visible to
            # every user through ps.
            env["RCLONE_CONFIG_PASS"] = self.options.config_password.get_secret_value()
        return env

    def _run(self, args: list[str], *, what: str) -> None:
        try:
            done = subprocess.run(
                self._command(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=self._env(),
                timeout=self.options.transfer_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TransientError(
                f"rclone {what} timed out after {self.options.transfer_timeout:g}s"
            ) from None
        except OSError as exc:
            raise PermanentError(f"cannot run rclone ({self.options.rclone}): {exc}") from None
        if done.returncode != 0:
            raise classify_exit(done.returncode, done.stderr.decode("utf-8", "replace"), what)

    def _rcat(self, dest: str, stream: IO[bytes] | _BytesSource) -> None:
        """Stream ``stream`` into ``rclone rcat dest``; kill rclone if the content breaks."""
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(
                    self._command(["rcat", dest]),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    env=self._env(),
                    start_new_session=True,
                )
            except OSError as exc:
                raise PermanentError(f"cannot run rclone ({self.options.rclone}): {exc}") from None
            assert proc.stdin is not None
            timed_out = threading.Event()

            def expire() -> None:
                timed_out.set()
                _kill(proc)

            timer = threading.Timer(self.options.transfer_timeout, expire)
            timer.daemon = True
            timer.start()
            try:
                while True:
                    if self.context.stop.is_set():
                        _kill(proc)
                        raise TransientError("export abandoned: invoicesync is stopping")
                    try:
                        chunk = stream.read(_CHUNK)
                    except Exception as exc:
                        # Kill first, close stdin after: rclone must never see
                        # end-of-input and store the truncated stream as complete.
                        _kill(proc)
                        raise TransientError(
                            "could not read the document's content: "
                            f"{short_reason(str(exc)) or type(exc).__name__}"
                        ) from None
                    if not chunk:
                        break
                    try:
                        proc.stdin.write(chunk)
                    except (BrokenPipeError, ValueError, OSError):
                        break  # rclone gave up; its exit code says why
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                code = proc.wait()
            finally:
                timer.cancel()
                if proc.poll() is None:
                    _kill(proc)
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if timed_out.is_set():
                raise TransientError(
                    f"rclone rcat timed out after {self.options.transfer_timeout:g}s"
                )
            if code != 0:
                errors.seek(0)
                text = errors.read().decode("utf-8", "replace")
                raise classify_exit(code, text, "rcat")

    def _discard(self, temp: str) -> None:
        """Delete a temporary upload if there is one; never raises."""
        with contextlib.suppress(Exception):
            self._run(["deletefile", temp], what="deletefile")


class _StoppableSource:
    """The content stream, cut short when the daemon is stopping."""

    def __init__(self, stream: IO[bytes], stop: threading.Event) -> None:
        self._stream = stream
        self._stop = stop

    def read(self, size: int) -> bytes:
        if self._stop.is_set():
            raise ContentReadError("invoicesync is stopping")
        return self._stream.read(size)


class _BytesSource:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int) -> bytes:
        data, self._data = self._data[:size], self._data[size:]
        return data


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        # rclone runs in its own session so that the whole group goes.
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


# A server's HTML error page, which rclone quotes verbatim into its message.
_HTML_PAGE = re.compile(r"<(?:!DOCTYPE|html|head|body)\b.*?(?:</html>|$)", re.I | re.S)
_HTML_TITLE = re.compile(r"<(title|h1)\b[^>]*>(.*?)</\1>", re.I | re.S)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,300}>")


def _without_html(text: str) -> str:
    """Replace an HTML error page in ``text`` by its title: the reason, not the markup."""

    def title(match: re.Match[str]) -> str:
        found = _HTML_TITLE.search(match.group(0))
        heading = " ".join(_HTML_TAG.sub(" ", found.group(2)).split()) if found else ""
        return f"(server error page: {heading})" if heading else "(server error page)"

    text = _HTML_PAGE.sub(title, text)
    return _HTML_TAG.sub(" ", text)


def _detail(output: str) -> str:
    output = _without_html(output)
    lines = [_LOG_PREFIX.sub("", line).strip() for line in output.splitlines()]
    lines = [" ".join(line.split()) for line in lines]
    lines = [line for line in lines if line and not line.startswith(("INFO", "DEBUG"))]
    return short_reason(" | ".join(lines[-3:]), 500)


def _by_text(message: str, detail: str) -> TransientError | PermanentError:
    if _PERMANENT_TEXT.search(detail) and not _TRANSIENT_TEXT.search(detail):
        return PermanentError(message)
    return TransientError(message)


def classify_exit(code: int, stderr: str, what: str) -> TransientError | PermanentError:
    """Turn an rclone exit code and its error output into the daemon's error type."""
    detail = _detail(stderr)
    if code < 0:
        meaning = f"killed by signal {-code}"
    else:
        meaning = EXIT_CODES.get(code, "unknown exit code")
    message = f"rclone {what} failed (exit {code}: {meaning})" + (f": {detail}" if detail else "")
    if code < 0 or code in _TRANSIENT_EXITS:
        return TransientError(message)
    if code == 1:
        return _by_text(message, detail)
    return PermanentError(message)


def classify_message(text: str, what: str) -> TransientError | PermanentError:
    """Classify an error message of ``rclone rcd`` (which has no exit code) like exit 1."""
    detail = _detail(text) or "rclone rcd stopped"
    return _by_text(f"rclone {what} failed: {detail}", detail)
