"""The sftp target against a real OpenSSH sshd on loopback."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fixtures.sshd import SshServer
from fixtures.target_items import breaking, context, make_item
from invoicesync.connectors_builtin.sftp import SftpAccessError, SftpTarget
from invoicesync.plugins import PermanentError, TransientError
from pydantic import ValidationError

pytestmark = pytest.mark.server

CONTENT = os.urandom(150_000)  # several pipelined write requests


def make_target(server: SshServer, tmp_path: Path, **overrides: Any) -> SftpTarget:
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.key_user,
        "private_key": str(server.user_key),
        "path": str(tmp_path / "remote"),
        "timeout": 10,
    }
    options.update(overrides)
    if "known_hosts" not in options:
        options["known_hosts"] = str(server.known_hosts(tmp_path))
    opts = SftpTarget.Options.model_validate(options, context={"base_dir": tmp_path})
    return SftpTarget("sftp-acct", opts, context(tmp_path))


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def fingerprint(pub_line: str, tmp_path: Path) -> str:
    pub = tmp_path / "host.pub"
    pub.write_text(pub_line + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]


def test_export_uploads_whole_file_and_reports_the_path(sshd: SshServer, tmp_path: Path) -> None:
    target = make_target(sshd, tmp_path)
    try:
        target.check()
        item = make_item(tmp_path, CONTENT)
        result = target.export(item)
    finally:
        target.close()
    root = tmp_path / "remote"
    assert result.remote_ref == f"{root}/acme/2026/invoice.pdf"
    assert (root / "acme/2026/invoice.pdf").read_bytes() == CONTENT
    assert listing(root) == ["acme/2026/invoice.pdf"]  # no temp file, no check probe


def test_reexport_replaces_in_place_without_duplicates(sshd: SshServer, tmp_path: Path) -> None:
    target = make_target(sshd, tmp_path)
    root = tmp_path / "remote"
    try:
        first = target.export(make_item(tmp_path, b"first revision"))
        again = target.export(make_item(tmp_path, b"first revision"))
        changed = target.export(make_item(tmp_path, b"second revision, longer"))
    finally:
        target.close()
    assert first.remote_ref == again.remote_ref == changed.remote_ref
    assert listing(root) == ["acme/2026/invoice.pdf"]
    assert (root / "acme/2026/invoice.pdf").read_bytes() == b"second revision, longer"


def test_password_authentication(sshd: SshServer, tmp_path: Path) -> None:
    if sshd.password_user is None or sshd.password_root is None:
        pytest.skip("no password user could be created (needs root and useradd)")
    target = make_target(
        sshd,
        tmp_path,
        username=sshd.password_user,
        password=sshd.password,
        private_key=None,
        path=str(sshd.password_root / "out"),
    )
    try:
        target.check()
        ref = target.export(make_item(tmp_path, CONTENT)).remote_ref
    finally:
        target.close()
    written = Path(ref)
    assert written.read_bytes() == CONTENT
    assert written.stat().st_uid != 0  # really written by the password user


def test_wrong_password_is_an_access_error_without_the_password(
    sshd: SshServer, tmp_path: Path
) -> None:
    if sshd.password_user is None:
        pytest.skip("no password user could be created (needs root and useradd)")
    target = make_target(
        sshd, tmp_path, username=sshd.password_user, password="not-the-pw-123", private_key=None
    )
    with pytest.raises(SftpAccessError) as info:
        target.check()
    message = str(info.value)
    assert f"authentication as {sshd.password_user!r}" in message
    assert "not-the-pw-123" not in message
    assert isinstance(info.value, TransientError)


def test_refused_login_is_not_repeated_for_every_document(sshd: SshServer, tmp_path: Path) -> None:
    if sshd.password_user is None:
        pytest.skip("no password user could be created (needs root and useradd)")
    target = make_target(
        sshd, tmp_path, username=sshd.password_user, password="not-the-pw-456", private_key=None
    )

    def failures() -> int:
        return sshd.log.read_text().count(f"Failed password for {sshd.password_user}")

    before = failures()
    for n in range(4):
        with pytest.raises(SftpAccessError, match="authentication"):
            target.export(make_item(tmp_path, b"doc %d" % n, remote_name=f"d{n}.pdf"))
    assert failures() - before == 1  # one login, then the same error fast: no ban
    with pytest.raises(SftpAccessError):
        target.check()  # an explicit check always tries again
    assert failures() - before == 2


def test_encrypted_key_needs_its_passphrase(sshd: SshServer, tmp_path: Path) -> None:
    good = make_target(
        sshd,
        tmp_path,
        private_key=str(sshd.encrypted_key),
        private_key_passphrase=sshd.encrypted_key_passphrase,
    )
    good.check()
    good.close()
    missing = make_target(sshd, tmp_path, private_key=str(sshd.encrypted_key))
    with pytest.raises(SftpAccessError, match="encrypted: set private_key_passphrase"):
        missing.check()
    wrong = make_target(
        sshd,
        tmp_path,
        private_key=str(sshd.encrypted_key),
        private_key_passphrase="wrong-passphrase-xyz",
    )
    with pytest.raises(SftpAccessError, match="cannot load private_key") as info:
        wrong.check()
    assert "wrong-passphrase-xyz" not in str(info.value)


def test_unknown_host_key_is_refused_with_instructions_that_work(
    sshd: SshServer, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"
    known_hosts.parent.mkdir()
    target = make_target(sshd, tmp_path, known_hosts=str(known_hosts))
    with pytest.raises(SftpAccessError) as info:
        target.check()
    message = str(info.value)
    expected_fp = fingerprint(sshd.host_key_line, tmp_path)
    assert message.startswith(
        f"host key for [127.0.0.1]:{sshd.port} (ssh-ed25519 {expected_fp}) is not in known_hosts "
        f"{known_hosts}; after verifying the fingerprint, add it with: "
    )
    assert not known_hosts.exists()  # never accepted silently
    command = message.split("add it with: ", 1)[1]
    assert command == f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {shlex.quote(str(known_hosts))}"
    subprocess.run(command, shell=True, check=True, capture_output=True, timeout=30)
    target.check()  # trusted now
    target.close()


def test_changed_host_key_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
        check=True,
        capture_output=True,
    )
    other_line = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    known_hosts = sshd.known_hosts(tmp_path, line=f"[127.0.0.1]:{sshd.port} {other_line}")
    target = make_target(sshd, tmp_path, known_hosts=str(known_hosts))
    with pytest.raises(SftpAccessError) as info:
        target.check()
    message = str(info.value)
    assert "does NOT match known_hosts" in message
    assert fingerprint(sshd.host_key_line, tmp_path) in message
    assert fingerprint(other_line, tmp_path) in message
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in message
    assert known_hosts.read_text().split()[2] == other_line.split()[1]  # file untouched


def test_unreachable_server_is_transient(sshd: SshServer, tmp_path: Path) -> None:
    from helpers import free_port

    target = make_target(sshd, tmp_path, port=free_port())
    with pytest.raises(TransientError, match="cannot connect to"):
        target.check()
    with pytest.raises(TransientError):
        target.export(make_item(tmp_path, b"x"))


def test_broken_stream_leaves_nothing_then_retry_gives_one_file(
    sshd: SshServer, tmp_path: Path
) -> None:
    target = make_target(sshd, tmp_path)
    root = tmp_path / "remote"
    item = make_item(tmp_path, CONTENT)
    try:
        with pytest.raises(TransientError, match="reading the content"):
            target.export(breaking(item, fail_after=len(CONTENT) // 2))
        assert listing(root) == []  # the temporary file was removed
        target.export(item)
    finally:
        target.close()
    assert listing(root) == ["acme/2026/invoice.pdf"]
    assert (root / "acme/2026/invoice.pdf").read_bytes() == CONTENT


def test_connection_lost_mid_upload_then_retry_gives_one_file(
    sshd: SshServer, tmp_path: Path
) -> None:
    target = make_target(sshd, tmp_path)
    root = tmp_path / "remote"
    old = make_item(tmp_path, b"old complete revision")
    item = make_item(tmp_path, CONTENT)
    try:
        target.export(old)
        # The connection the next export takes from the pool (the only one).
        (session,) = target._idle

        def cut() -> None:
            # Kill the TCP connection under paramiko, as a network failure would.
            transport = session.client.get_transport()
            assert transport is not None
            transport.sock.shutdown(2)

        with pytest.raises(TransientError):
            target.export(breaking(item, fail_after=len(CONTENT) // 2, on_break=cut))
        # The earlier revision is untouched: a reader never sees half a file.
        assert (root / "acme/2026/invoice.pdf").read_bytes() == b"old complete revision"
        target.export(item)  # reconnects, cleans the stale temporary file, uploads
    finally:
        target.close()
    assert listing(root) == ["acme/2026/invoice.pdf"]
    assert (root / "acme/2026/invoice.pdf").read_bytes() == CONTENT


def test_permissions_option_sets_the_mode(sshd: SshServer, tmp_path: Path) -> None:
    target = make_target(sshd, tmp_path, permissions="0640")
    try:
        ref = target.export(make_item(tmp_path, b"mode test")).remote_ref
    finally:
        target.close()
    assert stat.S_IMODE(os.stat(ref).st_mode) == 0o640


def test_permission_denied_is_permanent(sshd: SshServer, tmp_path: Path) -> None:
    if sshd.password_user is None or sshd.password_root is None:
        pytest.skip("no password user could be created (needs root and useradd)")
    locked = sshd.password_root / "locked"
    locked.mkdir()
    os.chmod(locked, 0o755)  # owned by root: the password user may not write
    target = make_target(
        sshd,
        tmp_path,
        username=sshd.password_user,
        password=sshd.password,
        private_key=None,
        path=str(locked),
    )
    try:
        with pytest.raises(PermanentError, match="permission denied"):
            target.export(make_item(tmp_path, b"denied"))
        with pytest.raises(PermanentError, match="permission denied"):
            target.check()
    finally:
        target.close()
    assert list(locked.iterdir()) == []


def test_a_file_where_a_folder_should_be_is_permanent(sshd: SshServer, tmp_path: Path) -> None:
    root = tmp_path / "remote"
    root.mkdir()
    (root / "acme").write_bytes(b"I am a file")
    target = make_target(sshd, tmp_path)
    try:
        with pytest.raises(PermanentError, match="is not a folder"):
            target.export(make_item(tmp_path, b"x"))
    finally:
        target.close()


@pytest.mark.parametrize(
    "name",
    [
        "../escape.pdf",
        "a/../../escape.pdf",
        "/etc/passwd",
        "a//b",
        ".",
        "..\\escape.pdf",
        "new\nline.pdf",
        "x" * 256 + ".pdf",
    ],
)
def test_hostile_names_are_refused(sshd: SshServer, tmp_path: Path, name: str) -> None:
    target = make_target(sshd, tmp_path)
    with pytest.raises(PermanentError, match="refusing"):
        target.export(make_item(tmp_path, b"x", remote_name=name))
    assert not (tmp_path / "remote").exists() or listing(tmp_path / "remote") == []
    assert not (tmp_path / "escape.pdf").exists()


def test_concurrent_exports_from_threads(sshd: SshServer, tmp_path: Path) -> None:
    target = make_target(sshd, tmp_path)
    items = [
        make_item(tmp_path, os.urandom(20_000), remote_name=f"t/{n:02d}.pdf", external_id=f"d{n}")
        for n in range(24)
    ]
    errors: list[BaseException] = []

    def work(part: list[Any]) -> None:
        try:
            for it in part:
                target.export(it)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(items[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    target.close()
    assert errors == []
    root = tmp_path / "remote"
    assert listing(root) == [f"t/{n:02d}.pdf" for n in range(24)]
    for n, it in enumerate(items):
        assert (root / f"t/{n:02d}.pdf").read_bytes() == it.content_path.read_bytes()


def test_rename_fallback_when_server_lacks_posix_rename(sshd: SshServer, tmp_path: Path) -> None:
    target = make_target(sshd, tmp_path)
    try:
        target.export(make_item(tmp_path, b"one"))
        (session,) = target._idle

        def unsupported(old: str, new: str) -> None:
            raise OSError("Operation unsupported")

        session.sftp.posix_rename = unsupported  # type: ignore[method-assign]
        target.export(make_item(tmp_path, b"two"))
        target.export(make_item(tmp_path, b"three"))
    finally:
        target.close()
    root = tmp_path / "remote"
    assert listing(root) == ["acme/2026/invoice.pdf"]
    assert (root / "acme/2026/invoice.pdf").read_bytes() == b"three"


def test_reconnects_after_the_server_dropped_an_idle_connection(
    sshd: SshServer, tmp_path: Path
) -> None:
    target = make_target(sshd, tmp_path)
    try:
        target.export(make_item(tmp_path, b"one", remote_name="a.pdf"))
        (session,) = target._idle
        session.client.close()  # as if the server had closed it
        target.export(make_item(tmp_path, b"two", remote_name="b.pdf"))
    finally:
        target.close()
    assert listing(tmp_path / "remote") == ["a.pdf", "b.pdf"]


def test_options_validation(tmp_path: Path) -> None:
    base = {"host": "h", "username": "u"}
    with pytest.raises(ValidationError, match="give password or private_key"):
        SftpTarget.Options.model_validate(base)
    with pytest.raises(ValidationError, match="octal file mode"):
        SftpTarget.Options.model_validate({**base, "password": "p", "permissions": "rw-r--r--"})
    with pytest.raises(ValidationError, match="needs private_key"):
        SftpTarget.Options.model_validate({**base, "password": "p", "private_key_passphrase": "x"})
    opts = SftpTarget.Options.model_validate(
        {**base, "password": "hunter2", "private_key": "keys/id", "known_hosts": "kh"},
        context={"base_dir": tmp_path},
    )
    assert opts.private_key == tmp_path / "keys/id"
    assert opts.known_hosts == tmp_path / "kh"
    assert "hunter2" not in repr(opts) and "hunter2" not in str(opts.model_dump())
    default = SftpTarget.Options.model_validate({**base, "password": "p"})
    assert default.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert default.port == 22


def test_portable_names(sshd: SshServer, tmp_path: Path) -> None:
    plain = make_target(sshd, tmp_path)
    portable = make_target(sshd, tmp_path, portable_names=True)
    assert plain.sanitize_component("a:b?.pdf") == "a:b?.pdf"
    assert portable.sanitize_component('a:b?<x>|"y".pdf ') == "a_b__x___y_.pdf"
    assert portable.sanitize_component("trailing. ") == "trailing"
    assert re.fullmatch(r"_", portable.sanitize_component("..."))


def test_registered_and_paramiko_imported_lazily() -> None:
    code = (
        "import sys\n"
        "from invoicesync.daemon.plugin_host import load_plugins\n"
        "r = load_plugins(entry_points=False)\n"
        "print(r.targets['sftp'].__name__, r.targets['email'].__name__)\n"
        "print('paramiko' in sys.modules)\n"
        "sys.modules['paramiko'] = None  # as if it were not installed\n"
        "from invoicesync.connectors_builtin.sftp.target import _paramiko\n"
        "try:\n"
        "    _paramiko()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == [
        "SftpTarget EmailTarget",
        "False",
        "ConfigurationError the sftp target needs paramiko: pip install 'invoicesync[sftp]'",
    ]
