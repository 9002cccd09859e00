"""uvicorn on a thread of the daemon's process.

The listening socket is bound here, in the calling thread, before the
server thread starts: a port in use or an address the machine does not have
is reported at start as a configuration problem instead of dying inside
uvicorn's thread. uvicorn installs no signal handlers off the main thread,
so SIGTERM stays the daemon's; :meth:`HttpServer.stop` asks uvicorn to exit
and waits a bounded time (open keep-alive connections are closed, requests
in progress get the rest of the grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import uvicorn

__all__ = ["HttpServer", "ListenError"]


class ListenError(OSError):
    """The configured address cannot be listened on."""


class HttpServer:
    """One uvicorn server for ``app`` on ``host:port``, on its own thread."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.host, self.port = host, port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ListenError(
                exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self.socket = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_config=None,  # our logging stays as it is: no uvicorn lines on stderr
            access_log=False,
            lifespan="off",
            server_header=False,
            date_header=True,
            timeout_graceful_shutdown=5,
            ws="none",
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http-server", daemon=True)
        self._done = threading.Event()

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.socket]))
        finally:
            self._done.set()

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the server to finish; True if its thread ended within ``timeout``."""
        self.server.should_exit = True
        if not self._thread.is_alive():
            with contextlib.suppress(OSError):
                self.socket.close()
            return True
        ended = self._done.wait(timeout)
        if not ended:
            self.server.force_exit = True
            ended = self._done.wait(1.0)
        with contextlib.suppress(OSError):
            self.socket.close()
        return ended
