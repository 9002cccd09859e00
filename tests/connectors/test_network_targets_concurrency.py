"""The network targets' default concurrency, seen from the server side.

Each test counts what a real server received (requests in flight at once,
client connections, folder creations, SSH logins) rather than timing anything:
a server that holds uploads until several are in flight at once proves that
the engine's threads overlap, and would make the assertion fail, not hang, for
a client that sends one at a time (the hold is bounded).
"""

from __future__ import annotations

import io
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from click.testing import CliRunner
from fixtures.sshd import SshServer
from fixtures.target_items import context, make_item
from fixtures.webdav_server import serve_wsgidav
from invoicesync.connectors_builtin.rclone import RcloneTarget
from invoicesync.connectors_builtin.s3 import S3Target
from invoicesync.connectors_builtin.sftp import SftpTarget
from invoicesync.connectors_builtin.webdav import WebDAVTarget
from invoicesync.daemon.cli import main
from invoicesync.daemon.config.models import ExportConfig
from invoicesync.plugins import ExportItem, PermanentError, Target

pytestmark = pytest.mark.server

#: How long the server holds an upload waiting for the others (a bound, not a measurement).
HOLD_S = 20.0


class Recorder:
    """WSGI middleware: records every request and holds PUTs until ``gate`` are in flight."""

    def __init__(self, app: Any, gate: int) -> None:
        self.app = app
        self.gate = gate
        self.cond = threading.Condition()
        self.requests: list[tuple[str, str, str]] = []  # method, path, client port
        self.puts_in_flight = 0
        self.most_puts_in_flight = 0
        self.opened = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        with self.cond:
            self.requests.append((method, path, str(environ.get("REMOTE_PORT"))))
        if method != "PUT":
            return self.app(environ, start_response)
        with self.cond:
            self.puts_in_flight += 1
            self.most_puts_in_flight = max(self.most_puts_in_flight, self.puts_in_flight)
            self.cond.notify_all()
            # Once the gate opened (or the bound passed), uploads go straight through.
            self.cond.wait_for(lambda: self.opened or self.puts_in_flight >= self.gate, HOLD_S)
            self.opened = True
            self.cond.notify_all()
        try:
            return list(self.app(environ, start_response))
        finally:
            with self.cond:
                self.puts_in_flight -= 1


def test_webdav_account_without_concurrency_uploads_on_8_connections_at_once(
    tmp_path: Path,
) -> None:
    recorders: list[Recorder] = []

    def wrap(app: Any) -> Any:
        recorders.append(Recorder(app, gate=8))
        return recorders[-1]

    with serve_wsgidav(tmp_path / "dav", threads=16, wrap=wrap) as server:
        config = tmp_path / "invoicesync.yaml"
        # No concurrency: the webdav target's default_concurrency (8) applies.
        config.write_text(
            "version: 1\n"
            "timezone: Europe/Berlin\n"
            "state: ./var\n"
            "companies: [{id: acme, name: ACME}]\n"
            "sources:\n"
            "  - {id: demo, type: demo, options: {count: 24, seed: 5}}\n"
            "exports:\n"
            "  - id: cloud\n"
            "    type: webdav\n"
            '    filename: "new/deeper/{company}-{number}.{ext}"\n'
            "    options:\n"
            f"      url: {server.url}\n"
            "      path: Belege\n"
            f"      username: {server.username}\n"
            "      password: env:DAV_PASSWORD\n"
        )
        result = CliRunner().invoke(
            main,
            ["--config", str(config), "--log-format", "json", "sync"],
            env={"DAV_PASSWORD": server.password},
        )
        assert result.exit_code == 0, result.output
        (recorder,) = recorders
        stored = server.files(server.root / "Belege")
    assert len(stored) == 24 and all(s.startswith("new/deeper/") for s in stored)
    # Eight uploads were in flight at the same moment: the default, no more.
    assert recorder.most_puts_in_flight == 8
    # Every folder level was created once, although eight threads needed it at once.
    mkcols = Counter(path.rstrip("/") for method, path, _ in recorder.requests if method == "MKCOL")
    assert mkcols == Counter({"/Belege": 1, "/Belege/new": 1, "/Belege/new/deeper": 1})
    # Each thread kept its connection alive: ~5 requests per document over at most 8.
    ports = {port for _, _, port in recorder.requests}
    assert len(recorder.requests) >= 24 * 4
    assert len(ports) <= 8


def test_an_account_concurrency_overrides_the_target_default(tmp_path: Path) -> None:
    recorders: list[Recorder] = []

    def wrap(app: Any) -> Any:
        recorders.append(Recorder(app, gate=3))
        return recorders[-1]

    with serve_wsgidav(tmp_path / "dav", threads=16, wrap=wrap) as server:
        config = tmp_path / "invoicesync.yaml"
        config.write_text(
            "version: 1\n"
            "timezone: Europe/Berlin\n"
            "state: ./var\n"
            "companies: [{id: acme, name: ACME}]\n"
            "sources:\n"
            "  - {id: demo, type: demo, options: {count: 9, seed: 6}}\n"
            "exports:\n"
            "  - id: cloud\n"
            "    type: webdav\n"
            "    concurrency: 3\n"
            "    options:\n"
            f"      url: {server.url}\n"
            f"      username: {server.username}\n"
            "      password: env:DAV_PASSWORD\n"
        )
        result = CliRunner().invoke(
            main,
            ["--config", str(config), "--log-format", "json", "sync"],
            env={"DAV_PASSWORD": server.password},
        )
        assert result.exit_code == 0, result.output
        (recorder,) = recorders
    assert recorder.most_puts_in_flight == 3
    assert len({port for _, _, port in recorder.requests}) <= 3


def test_default_concurrency_of_each_target_and_its_resolution() -> None:
    assert Target.default_concurrency == 1
    assert WebDAVTarget.default_concurrency == 8
    assert SftpTarget.default_concurrency == 4
    assert S3Target.default_concurrency == 16
    assert RcloneTarget.default_concurrency == 8
    unset = ExportConfig.model_validate({"id": "a", "type": "webdav"})
    assert unset.concurrency is None
    assert unset.workers(8) == 8
    assert unset.workers(0) == 1 and unset.workers(500) == 32  # a plugin's odd value, clamped
    assert unset.workers("8") == 1 and unset.workers(True) == 1
    assert (
        ExportConfig.model_validate({"id": "a", "type": "webdav", "concurrency": 2}).workers(8) == 2
    )


@dataclass(frozen=True)
class GatedItem(ExportItem):
    """An item whose content opens only once ``barrier`` has all its parties.

    The sftp target opens the content while it holds a connection, so the
    barrier passing means that many connections were in use at once.
    """

    barrier: threading.Barrier | None = None

    def open(self) -> IO[bytes]:
        if self.barrier is not None:
            self.barrier.wait(HOLD_S)
        return io.BytesIO(self.content_path.read_bytes())


def _logins(server: SshServer) -> int:
    return server.log.read_text(errors="replace").count("Accepted publickey")


def test_sftp_uses_a_pool_of_connections_one_per_thread_and_reuses_them(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "remote"
    options = SftpTarget.Options.model_validate(
        {
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.key_user,
            "private_key": str(sshd.user_key),
            "known_hosts": str(sshd.known_hosts(tmp_path)),
            "path": str(root),
        }
    )
    target = SftpTarget("pool", options, context(tmp_path))
    workers = SftpTarget.default_concurrency
    barrier = threading.Barrier(workers)
    content = tmp_path / "content"
    content.mkdir()
    first = [
        GatedItem(**vars(make_item(content, f"doc {n}".encode(), f"new/{n}.pdf")), barrier=barrier)
        for n in range(workers)
    ]
    second = [make_item(content, f"more {n}".encode(), f"new/more-{n}.pdf") for n in range(16)]
    before = _logins(sshd)
    try:
        with ThreadPoolExecutor(workers) as pool:
            # All four uploads hold their connection at once (the barrier), into
            # one folder none of them found: each must still succeed.
            list(pool.map(target.export, first))
            after_first = _logins(sshd)
            list(pool.map(target.export, second))
        after_second = _logins(sshd)
    finally:
        target.close()
    assert after_first - before == workers, "one connection per thread in flight"
    assert after_second == after_first, "the second round reused the pooled connections"
    assert sorted(p.name for p in (root / "new").iterdir()) == sorted(
        [f"{n}.pdf" for n in range(workers)] + [f"more-{n}.pdf" for n in range(16)]
    )
    assert (root / "new/2.pdf").read_bytes() == b"doc 2"


def test_s3_threads_share_one_client_with_a_pool_for_them(tmp_path: Path) -> None:
    options = S3Target.Options.model_validate(
        {
            "bucket": f"b-{uuid.uuid4().hex[:8]}",
            "endpoint_url": "http://127.0.0.1:9",
            "access_key_id": "k",
            "secret_access_key": "s",
        }
    )
    target = S3Target("s3", options, context(tmp_path))
    barrier = threading.Barrier(8)

    def client_of_a_thread(_: int) -> int:
        barrier.wait(HOLD_S)  # all eight ask for the client at the same moment
        return id(target.client)

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(client_of_a_thread, range(8)))
    assert len(ids) == 1
    assert target.client.meta.config.max_pool_connections >= 32 >= S3Target.default_concurrency
    target.close()


def test_webdav_lists_a_folder_once_instead_of_a_propfind_per_new_name(tmp_path: Path) -> None:
    recorders: list[Recorder] = []

    def wrap(app: Any) -> Any:
        recorders.append(Recorder(app, gate=1))
        return recorders[-1]

    with serve_wsgidav(tmp_path / "dav", wrap=wrap) as server:
        (recorder,) = recorders
        (server.root / "Belege/a").mkdir(parents=True)
        (server.root / "Belege/a/old.pdf").write_bytes(b"someone else's file")
        options = WebDAVTarget.Options.model_validate(
            {
                "url": server.url,
                "path": "Belege",
                "username": server.username,
                "password": server.password,
            }
        )
        target = WebDAVTarget("dav", options, context(tmp_path))
        content = tmp_path / "content"
        content.mkdir()
        try:
            for n in range(5):
                target.export(make_item(content, f"doc {n}".encode(), f"a/{n}.pdf"))
            # A name that was in the listing is checked as before (and replaced).
            target.export(make_item(content, b"mine now", "a/old.pdf"))
            # Names that appear after the listing, behind the target's back:
            # a file is replaced, a folder is refused, as without the listing.
            auth = (server.username, server.password)
            httpx.put(f"{server.url}Belege/a/late.pdf", content=b"theirs", auth=auth)
            httpx.request("MKCOL", f"{server.url}Belege/a/dir.pdf", auth=auth)
            target.export(make_item(content, b"ours", "a/late.pdf"))
            with pytest.raises(PermanentError, match="is a folder"):
                target.export(make_item(content, b"refused", "a/dir.pdf"))
        finally:
            target.close()
        listing = server.files(server.root / "Belege/a")
    propfinds = Counter(path for method, path, _ in recorder.requests if method == "PROPFIND")
    # One listing of the folder; each new name only PROPFINDed after its MOVE (the ETag).
    assert propfinds["/Belege/a/"] == 1
    assert all(propfinds[f"/Belege/a/{n}.pdf"] == 1 for n in range(5))
    assert propfinds["/Belege/a/old.pdf"] == 2  # checked before, and the ETag after
    assert sorted(listing) == sorted([f"{n}.pdf" for n in range(5)] + ["late.pdf", "old.pdf"])
    assert (server.root / "Belege/a/late.pdf").read_bytes() == b"ours"
    assert (server.root / "Belege/a/old.pdf").read_bytes() == b"mine now"
    assert list((server.root / "Belege/a/dir.pdf").iterdir()) == []
