"""A long-running ``rclone rcd`` that the ``rclone`` target talks to over loopback HTTP.

Starting rclone costs about 0.1 s of CPU (Go runtime and every backend's
initialisation) and the CLI mode starts it twice per document; with
``persistent: true`` one ``rclone rcd`` serves all documents of the target
through its remote-control API (``operations/uploadfile``, ``movefile``...).

The API listens on 127.0.0.1 only, with a random user and password handed to
rclone through its environment (``RCLONE_RC_USER``/``RCLONE_RC_PASS``), so
neither appears in ``ps``; other local users cannot drive it.
"""

from __future__ import annotations

import contextlib
import ctypes
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from invoicesync.plugins import PermanentError, TransientError

from .._remote import ContentReadError, short_reason

__all__ = ["RcdServer", "Readable"]


class Readable(Protocol):
    """Anything with ``read(size)`` returning bytes (a file, a wrapper)."""

    def read(self, size: int, /) -> bytes: ...


_CHUNK = 256 * 1024
#: Uploads between two resets of rclone's transfer statistics (see _forget_stats).
STATS_RESET_EVERY = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send rclone SIGTERM when its parent dies.

    ``close()`` and the finalizer stop rclone on any orderly exit; this covers
    a ``kill -9`` of invoicesync, after which an orphaned ``rclone rcd`` would
    otherwise listen on loopback forever. The libc function is looked up here,
    before the fork: the child only makes one system call before exec.
    (PR_SET_PDEATHSIG fires when the *thread* that started rclone ends; the
    engine's export threads live as long as the run, which closes the target.)
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return preexec


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RcdServer:
    """One ``rclone rcd`` process and an HTTP client for it."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        *,
        timeout: float,
        transfer_timeout: float,
        classify: Callable[[str, str], TransientError | PermanentError],
    ) -> None:
        self._classify = classify
        port = _free_port()
        user, password = "invoicesync", secrets.token_urlsafe(24)
        env = {**env, "RCLONE_RC_USER": user, "RCLONE_RC_PASS": password}
        # rclone's log, kept for as long as the server runs (closed in close()).
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [*command, "rcd", "--rc-addr", f"127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                env=env,
                # One prctl call between fork and exec (see _die_with_parent).
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            self._log.close()
            raise PermanentError(f"cannot run rclone: {exc}") from None
        # Stops rclone when this object is collected or the interpreter exits,
        # even if nobody calls close().
        self._finalizer = weakref.finalize(self, _stop, self._proc)
        self._uploads = 0
        self._uploads_lock = threading.Lock()
        self._wait_listening(port, deadline=time.monotonic() + max(10.0, timeout))
        import httpx  # here: every start of invoicesync loads this module, few use rcd

        self._client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/",
            auth=(user, password),
            timeout=httpx.Timeout(transfer_timeout, connect=timeout),
        )

    def _wait_listening(self, port: int, deadline: float) -> None:
        while True:
            if self._proc.poll() is not None:
                raise self._classify(self._output(), "rcd")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise TransientError("rclone rcd did not start listening in time") from None
                time.sleep(0.02)

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read()[-4000:].decode("utf-8", "replace")

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Call one rc method with JSON parameters; classify its error."""
        return self._send(method, json=params)

    def upload(self, fs: str, folder: str, name: str, stream: Readable) -> None:
        """Stream ``stream`` into ``fs``/``folder``/``name`` (operations/uploadfile)."""
        self._send(
            "operations/uploadfile",
            params={"fs": fs, "remote": folder},
            files={"file0": (name, _Reader(stream), "application/octet-stream")},
        )
        self._forget_stats()

    def _forget_stats(self) -> None:
        """Every ``STATS_RESET_EVERY`` uploads, drop rclone's transfer statistics.

        rclone rcd keeps a record of every transfer it served (``core/stats``):
        measured here, ~70 KB of memory per document (702 MiB after 10,000).
        Nobody reads them; resetting them keeps rclone's memory flat.
        """
        with self._uploads_lock:
            self._uploads += 1
            due = self._uploads % STATS_RESET_EVERY == 0
        if due:
            with contextlib.suppress(PermanentError, TransientError):
                self._send("core/stats-reset", json={})

    def _send(self, method: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        what = method.split("/")[-1]
        try:
            response = self._client.post(method, **kwargs)
        except ContentReadError as exc:
            raise TransientError(f"could not read the document's content: {exc}") from None
        except httpx.TimeoutException:
            raise TransientError(f"rclone {what} timed out") from None
        except httpx.TransportError as exc:
            if not self.alive:
                raise self._classify(self._output(), what) from None
            raise TransientError(
                f"rclone {what}: lost the connection to rclone rcd ({short_reason(str(exc))})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        if response.status_code == 200:
            return body if isinstance(body, dict) else {}
        text = str(body.get("error") if isinstance(body, dict) else body)
        if response.status_code in (400, 404):
            # Bad parameters or an unknown method: retrying will not help.
            return_error: TransientError | PermanentError = PermanentError(
                f"rclone {what} refused: {short_reason(text, 500)}"
            )
        else:
            return_error = self._classify(text, what)
        raise return_error

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
        self._finalizer()
        with contextlib.suppress(OSError):
            self._log.close()


class _Reader:
    """File-like view of the content for httpx's multipart encoder.

    Only ``read``: httpx then streams it with chunked encoding instead of
    reading it whole, and a read failure aborts the request (rclone sees a
    truncated body and stores nothing under the final name).
    """

    def __init__(self, stream: Readable) -> None:
        self._stream = stream

    def read(self, size: int = _CHUNK) -> bytes:
        try:
            return self._stream.read(size if size and size > 0 else _CHUNK)
        except Exception as exc:
            raise ContentReadError(short_reason(str(exc)) or type(exc).__name__) from None

    def __iter__(self) -> Any:
        while chunk := self.read(_CHUNK):
            yield chunk
