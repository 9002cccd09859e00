"""The webdav, s3 and rclone targets pass the connector conformance suite on real servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.rclone_remotes import RcloneRemotes, obscure, write_config
from fixtures.s3_server import S3Server
from fixtures.webdav_server import WebDAVServer
from helpers import free_port
from invoicesync.connectors_builtin.rclone import RcloneOptions, RcloneTarget
from invoicesync.connectors_builtin.s3 import S3Options, S3Target
from invoicesync.connectors_builtin.webdav import WebDAVOptions, WebDAVTarget
from invoicesync.plugins.testing import TargetConformance, make_context

pytestmark = pytest.mark.server

ReadRemote = Callable[[str], "bytes | None"]
ListRemote = Callable[[], "list[str]"]


def _files(root: Path) -> list[str]:
    # Apache's mod_dav_fs keeps dead properties in .DAV/ folders beside the files.
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, fs in os.walk(root)
        for f in fs
        if ".DAV" not in Path(os.path.relpath(d, root)).parts
    )


class _LocalTreeFixtures:
    """read_remote/list_remote over the directory where the server keeps the files."""

    @pytest.fixture
    def read_remote(self, local_root: Path) -> ReadRemote:
        def read(name: str) -> bytes | None:
            path = local_root / name
            return path.read_bytes() if path.is_file() else None

        return read

    @pytest.fixture
    def list_remote(self, local_root: Path) -> ListRemote:
        return lambda: _files(local_root) if local_root.exists() else []


class TestWebDAVTargetConformance(_LocalTreeFixtures, TargetConformance):
    """Against wsgidav, Apache mod_dav and lighttpd mod_webdav (any_webdav_server)."""

    @pytest.fixture
    def folder(self, any_webdav_server: WebDAVServer) -> tuple[str, Path]:
        return any_webdav_server.folder()

    @pytest.fixture
    def local_root(self, folder: tuple[str, Path]) -> Path:
        folder[1].mkdir()
        return folder[1]

    @pytest.fixture
    def target(
        self,
        any_webdav_server: WebDAVServer,
        folder: tuple[str, Path],
        local_root: Path,
        tmp_path: Path,
    ) -> WebDAVTarget:
        options = WebDAVOptions.model_validate(
            {
                "url": any_webdav_server.url,
                "path": folder[0],
                "username": any_webdav_server.username,
                "password": any_webdav_server.password,
                "timeout": 10,
            }
        )
        return WebDAVTarget("dav", options, make_context(tmp_path / "state"))

    @pytest.fixture
    def secret(self) -> str:
        return "wrong-password-for-conformance"

    @pytest.fixture
    def broken_target(self, any_webdav_server: WebDAVServer, secret: str, tmp_path: Path) -> Any:
        options = WebDAVOptions.model_validate(
            {"url": any_webdav_server.url, "username": "alice", "password": secret, "timeout": 5}
        )
        return WebDAVTarget("dav", options, make_context(tmp_path / "state"))


class TestS3TargetConformance(TargetConformance):
    @pytest.fixture
    def bucket(self, s3_server: S3Server) -> str:
        return s3_server.new_bucket()

    @pytest.fixture
    def target(self, s3_server: S3Server, bucket: str, tmp_path: Path) -> Iterator[S3Target]:
        options = S3Options.model_validate(
            {
                "endpoint_url": s3_server.endpoint_url,
                "bucket": bucket,
                "prefix": "books",
                "access_key_id": "testing",
                "secret_access_key": "testing-secret",
                "timeout": 10,
            }
        )
        yield S3Target("s3", options, make_context(tmp_path / "state"))

    @pytest.fixture
    def list_remote(self, s3_server: S3Server, bucket: str) -> ListRemote:
        def listing() -> list[str]:
            found = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
            # Keys outside the prefix would be an escape: show them whole.
            return [o["Key"].removeprefix("books/") for o in found]

        return listing

    @pytest.fixture
    def read_remote(self, s3_server: S3Server, bucket: str) -> ReadRemote:
        def read(name: str) -> bytes | None:
            client = s3_server.client()
            try:
                return bytes(client.get_object(Bucket=bucket, Key=f"books/{name}")["Body"].read())
            except client.exceptions.NoSuchKey:
                return None

        return read

    @pytest.fixture
    def secret(self) -> str:
        return "conformance-secret-key"

    @pytest.fixture
    def broken_target(self, secret: str, tmp_path: Path) -> S3Target:
        options = S3Options.model_validate(
            {
                "endpoint_url": f"http://127.0.0.1:{free_port()}",
                "bucket": "bucket",
                "access_key_id": "testing",
                "secret_access_key": secret,
                "timeout": 2,
            }
        )
        return S3Target("s3", options, make_context(tmp_path / "state"))


class _RcloneConformance(_LocalTreeFixtures, TargetConformance):
    # rclone runs twice per document: a smaller "large" document keeps it quick.
    large_size = 2 * 1024 * 1024

    def remote_and_root(self, remotes: RcloneRemotes) -> tuple[str, Path]:
        raise NotImplementedError

    @pytest.fixture
    def place(self, rclone_remotes: RcloneRemotes) -> tuple[str, Path]:
        return self.remote_and_root(rclone_remotes)

    @pytest.fixture
    def local_root(self, place: tuple[str, Path]) -> Path:
        place[1].mkdir(parents=True)
        return place[1]

    @pytest.fixture
    def target(
        self,
        rclone_remotes: RcloneRemotes,
        place: tuple[str, Path],
        local_root: Path,
        tmp_path: Path,
    ) -> RcloneTarget:
        # One rclone process per step; the persistent (default) mode has its own class below.
        options = RcloneOptions.model_validate(
            {
                "remote": place[0],
                "config": str(rclone_remotes.config),
                "timeout": 10,
                "persistent": False,
            }
        )
        return RcloneTarget("rc", options, make_context(tmp_path / "state"))

    @pytest.fixture
    def secret(self) -> str:
        return "wrong-rclone-password"

    @pytest.fixture
    def broken_target(self, rclone_remotes: RcloneRemotes, secret: str, tmp_path: Path) -> Any:
        config = write_config(
            tmp_path / "broken.conf",
            rclone_remotes.program,
            {
                "dav": {
                    "type": "webdav",
                    "url": rclone_remotes.webdav.url,
                    "vendor": "other",
                    "user": "alice",
                    "pass": obscure(rclone_remotes.program, secret),
                }
            },
        )
        options = RcloneOptions.model_validate(
            {"remote": "dav:x", "config": str(config), "timeout": 5}
        )
        return RcloneTarget("rc", options, make_context(tmp_path / "state"))


class TestRcloneLocalTargetConformance(_RcloneConformance):
    def remote_and_root(self, remotes: RcloneRemotes) -> tuple[str, Path]:
        root = remotes.local_root / f"c-{uuid.uuid4().hex[:10]}"
        return f"loc:{root}", root


class TestRclonePersistentLocalTargetConformance(_RcloneConformance):
    """The same suite with ``persistent: true`` (one rclone rcd for all documents)."""

    @pytest.fixture
    def target(
        self,
        rclone_remotes: RcloneRemotes,
        place: tuple[str, Path],
        local_root: Path,
        tmp_path: Path,
    ) -> Iterator[RcloneTarget]:
        options = RcloneOptions.model_validate(
            {
                "remote": place[0],
                "config": str(rclone_remotes.config),
                "timeout": 10,
                "persistent": True,
            }
        )
        target = RcloneTarget("rc", options, make_context(tmp_path / "state"))
        yield target
        target.close()  # stops rclone rcd

    def remote_and_root(self, remotes: RcloneRemotes) -> tuple[str, Path]:
        root = remotes.local_root / f"p-{uuid.uuid4().hex[:10]}"
        return f"loc:{root}", root


class TestRcloneWebDAVTargetConformance(_RcloneConformance):
    def remote_and_root(self, remotes: RcloneRemotes) -> tuple[str, Path]:
        name = f"c-{uuid.uuid4().hex[:10]}"
        return f"dav:{name}", remotes.webdav.root / name
