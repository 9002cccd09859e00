"""The ``webdav`` target through the command line against three server implementations
(issue 10 item 10): wsgidav, Apache ``mod_dav`` and lighttpd ``mod_webdav``.

lighttpd answers 415 to a PROPFIND/PROPPATCH body without an XML Content-Type
(RFC 4918 section 8.2): every document used to be rejected there. A temporary
upload left on the server when it went down between PROPPATCH and MOVE used to
stay there for good; the next run now removes it (only the exact names this
target recorded before uploading).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.cli import run_cli
from fixtures.cutting_proxy import cutting_proxy
from fixtures.webdav_server import WebDAVServer

pytestmark = pytest.mark.server


def _config(tmp_path: Path, url: str, folder: str, server: WebDAVServer) -> Path:
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        "version: 1\n"
        "state: ./var\n"
        "sources:\n"
        "  - {id: inbox, type: folder, options: {path: ./inbox}}\n"
        "exports:\n"
        "  - id: cloud\n"
        "    type: webdav\n"
        '    filename: "{filename}.{ext}"\n'
        "    retry: {attempts: 1}\n"
        "    options:\n"
        f"      url: {url}\n"
        f"      path: {folder}\n"
        f"      username: {server.username}\n"
        "      password: env:DAV_PASSWORD\n"
        "      timeout: 5s\n",
        encoding="utf-8",
    )
    return config


def test_sync_and_interrupted_move_on_every_server(
    any_webdav_server: WebDAVServer, tmp_path: Path
) -> None:
    server = any_webdav_server
    folder, local = server.folder()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.pdf").write_bytes(b"%PDF-1.4 first\n")
    env = {"DAV_PASSWORD": server.password}
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    with cutting_proxy(port) as proxy:
        config = _config(tmp_path, f"http://127.0.0.1:{proxy.port}/", folder, server)
        checked = run_cli("check-config", "--connect", config=config, env=env, cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        synced = run_cli("sync", config=config, env=env, cwd=tmp_path)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert server.files(local) == ["a.pdf"]

        # The server goes down between PROPPATCH and MOVE: the temporary upload stays.
        (inbox / "b.pdf").write_bytes(b"%PDF-1.4 second\n")
        proxy.go_down_on(b"MOVE")
        failed = run_cli("sync", config=config, env=env, cwd=tmp_path)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        server.settled(local)
        left = [name for name in server.files(local) if name != "a.pdf"]
        assert len(left) == 1, left
        assert left[0].startswith(".invoicesync-") and left[0].endswith(".tmp"), left

        # Back up: the next export run delivers b.pdf and removes the stale temporary.
        proxy.come_back()
        (local / "unrelated.tmp").write_bytes(b"not ours")
        (local / ".invoicesync-lookalike.tmp").write_bytes(b"not recorded by us")
        # (b.pdf waits for its retry back-off; `retry` exports it now.)
        again = run_cli("retry", "cloud", config=config, env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
    assert server.files(local) == [
        ".invoicesync-lookalike.tmp", "a.pdf", "b.pdf", "unrelated.tmp"
    ]
    assert (local / "b.pdf").read_bytes() == b"%PDF-1.4 second\n"
    # What the target recorded about its temporaries is gone with them.
    journal = [p for p in (tmp_path / "var" / "connectors").rglob("*") if p.is_file()]
    assert not [p for p in journal if "temporar" in str(p)], journal
