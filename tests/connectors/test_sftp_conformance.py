"""The sftp target passes the connector conformance suite against a real sshd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures.sshd import SshServer
from fixtures.target_items import context
from helpers import IN_CI
from invoicesync.connectors_builtin.sftp import SftpTarget

try:
    from invoicesync.plugins.testing import TargetConformance
except ImportError:  # pragma: no cover - until the suite is installed
    if IN_CI:
        raise
    pytest.skip("the conformance suite is not installed yet", allow_module_level=True)

pytestmark = pytest.mark.server

WRONG_PASSWORD = "wrong-Password-for-conformance"


def _target(sshd: SshServer, folder: Path, **overrides: Any) -> SftpTarget:
    folder.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.key_user,
        "private_key": str(sshd.user_key),
        "known_hosts": str(sshd.known_hosts(folder)),
        "path": str(folder / "remote"),
        "timeout": 10,
        **overrides,
    }
    return SftpTarget("sftp-conf", SftpTarget.Options.model_validate(options), context(folder))


class TestSftpTargetConformance(TargetConformance):
    @pytest.fixture
    def local_root(self, tmp_path: Path) -> Path:
        root = tmp_path / "remote"
        root.mkdir(exist_ok=True)
        return root

    @pytest.fixture
    def target(self, sshd: SshServer, tmp_path: Path, local_root: Path) -> SftpTarget:
        target = _target(sshd, tmp_path)
        target.check()
        return target

    @pytest.fixture
    def read_remote(self, local_root: Path) -> Any:
        def read(name: str) -> bytes | None:
            path = local_root / name
            return path.read_bytes() if path.is_file() else None

        return read

    @pytest.fixture
    def list_remote(self, local_root: Path) -> Any:
        return lambda: sorted(
            p.relative_to(local_root).as_posix() for p in local_root.rglob("*") if p.is_file()
        )

    @pytest.fixture
    def secret(self) -> str:
        return WRONG_PASSWORD

    @pytest.fixture
    def broken_target(self, sshd: SshServer, tmp_path: Path) -> SftpTarget:
        if sshd.password_user is None:
            # No password user on this machine: a key the server does not know.
            return _target(sshd, tmp_path / "broken", private_key=str(sshd.host_key_path()))
        return _target(
            sshd,
            tmp_path / "broken",
            username=sshd.password_user,
            password=WRONG_PASSWORD,
            private_key=None,
        )
