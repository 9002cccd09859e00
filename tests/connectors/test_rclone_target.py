"""The ``rclone`` target with rclone's local backend and a WebDAV remote on loopback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.cutting_proxy import cutting_proxy
from fixtures.export_items import document, item
from fixtures.http_faults import FaultServer
from fixtures.rclone_remotes import RcloneRemotes, obscure, write_config
from invoicesync.connectors_builtin.rclone import RcloneOptions, RcloneTarget
from invoicesync.connectors_builtin.rclone.target import classify_exit
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import ConnectorContext, PermanentError, TransientError
from pydantic import ValidationError

pytestmark = pytest.mark.server


def make(tmp_path: Path, **options: Any) -> RcloneTarget:
    options.setdefault("timeout", "5s")
    options.setdefault("transfer_timeout", "60s")
    return RcloneTarget(
        "rc", RcloneOptions.model_validate(options), ConnectorContext("rc", tmp_path)
    )


def files(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


@pytest.fixture(params=["local", "webdav"])
def remote(request: pytest.FixtureRequest, rclone_remotes: RcloneRemotes) -> tuple[str, Path]:
    """(remote option, the local folder where its files land), fresh for each test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    if request.param == "local":
        root = rclone_remotes.local_root / name
        return f"loc:{root}", root
    return f"dav:{name}/Invoices", rclone_remotes.webdav.root / name / "Invoices"


@pytest.fixture(params=[False, True], ids=["cli", "rcd"])
def target(
    request: pytest.FixtureRequest,
    rclone_remotes: RcloneRemotes,
    remote: tuple[str, Path],
    tmp_path: Path,
) -> Iterator[RcloneTarget]:
    t = make(
        tmp_path,
        remote=remote[0],
        config=rclone_remotes.config,
        rclone=rclone_remotes.program,
        persistent=request.param,
    )
    yield t
    t.close()


def test_registered_as_builtin() -> None:
    assert load_plugins(entry_points=False).target_type("rclone") is RcloneTarget


def test_check_creates_the_folder(target: RcloneTarget, remote: tuple[str, Path]) -> None:
    target.check()
    assert remote[1].is_dir()
    assert files(remote[1]) == []


def test_export_round_trip_and_reference(
    target: RcloneTarget, remote: tuple[str, Path], tmp_path: Path
) -> None:
    content = b"%PDF-1.4 rclone\n"
    result = target.export(item(tmp_path, content, "acme/2024/Müller #1.pdf"))
    assert result.remote_ref == f"{remote[0]}/acme/2024/Müller #1.pdf"
    assert (remote[1] / "acme/2024/Müller #1.pdf").read_bytes() == content
    assert files(remote[1]) == ["acme/2024/Müller #1.pdf"]


def test_reexport_replaces_without_duplicate(
    target: RcloneTarget, remote: tuple[str, Path], tmp_path: Path
) -> None:
    content = b"%PDF-1.4 one\n"
    doc = document(content)
    first = target.export(item(tmp_path, content, "a/x.pdf", doc=doc))
    second = target.export(item(tmp_path, content, "a/x.pdf", doc=doc))
    assert first.remote_ref == second.remote_ref
    new = b"%PDF-1.4 two, longer\n"
    target.export(item(tmp_path, new, "a/x.pdf", doc=document(new)))
    assert (remote[1] / "a/x.pdf").read_bytes() == new
    assert files(remote[1]) == ["a/x.pdf"]


def test_interrupted_upload_is_retried_to_exactly_one_file(
    target: RcloneTarget, remote: tuple[str, Path], tmp_path: Path
) -> None:
    # Larger than rclone's streaming cutoff (100 KiB), so rclone is really
    # writing the temporary file when the content breaks off.
    content = os.urandom(3 * 1024 * 1024)
    doc = document(content)
    with pytest.raises(TransientError, match="could not read"):
        target.export(item(tmp_path, content, "big.pdf", doc=doc, fail_after=len(content) // 2))
    assert files(remote[1]) == [], "no partial or temporary file may remain"
    target.export(item(tmp_path, content, "big.pdf", doc=doc))
    assert files(remote[1]) == ["big.pdf"]
    assert (remote[1] / "big.pdf").read_bytes() == content


@pytest.mark.parametrize("persistent", [False, True], ids=["cli", "rcd"])
def test_connection_dropped_mid_upload_then_retried(
    rclone_remotes: RcloneRemotes, tmp_path: Path, persistent: bool
) -> None:
    dav = rclone_remotes.webdav
    port = int(dav.url.rstrip("/").rsplit(":", 1)[1])
    name, root = dav.folder()
    content = os.urandom(2 * 1024 * 1024)
    doc = document(content)
    with cutting_proxy(port) as proxy:
        config = write_config(
            tmp_path / "proxied.conf",
            rclone_remotes.program,
            {
                "dav": {
                    "type": "webdav",
                    "url": f"http://127.0.0.1:{proxy.port}/",
                    "vendor": "other",
                    "user": dav.username,
                    "pass": obscure(rclone_remotes.program, dav.password),
                }
            },
        )
        # rclone's own low-level retry would resend the PUT and hide the cut.
        t = make(
            tmp_path,
            remote=f"dav:{name}",
            config=config,
            extra_args=["--low-level-retries", "1"],
            persistent=persistent,
        )
        try:
            t.check()
            proxy.arm(cut_after=len(content) // 2)
            with pytest.raises(TransientError):
                t.export(item(tmp_path, content, "dropped.pdf", doc=doc))
            assert proxy.cuts == 1, "the proxy must really have cut the upload"
            assert files(root) == [], "the cut upload must leave no file, temporary or final"
            t.export(item(tmp_path, content, "dropped.pdf", doc=doc))
        finally:
            t.close()
    assert files(root) == ["dropped.pdf"]
    assert (root / "dropped.pdf").read_bytes() == content


def test_persistent_rcd_is_restarted_after_dying_and_stopped_by_close(
    rclone_remotes: RcloneRemotes, tmp_path: Path
) -> None:
    root = rclone_remotes.local_root / "rcd-restart"
    t = make(tmp_path, remote=f"loc:{root}", config=rclone_remotes.config, persistent=True)
    t.export(item(tmp_path, b"%PDF one", "one.pdf"))
    first = t.rcd
    first._proc.kill()
    first._proc.wait()
    t.export(item(tmp_path, b"%PDF two", "two.pdf"))
    second = t.rcd
    assert second is not first and second.alive
    t.close()
    assert not second.alive, "close() must stop rclone rcd"
    assert files(root) == ["one.pdf", "two.pdf"]


def test_persistent_unknown_remote_is_permanent(
    rclone_remotes: RcloneRemotes, tmp_path: Path
) -> None:
    t = make(tmp_path, remote="nosuch:x", config=rclone_remotes.config, persistent=True)
    try:
        with pytest.raises(PermanentError, match="didn't find section"):
            t.check()
    finally:
        t.close()


def test_shutdown_abandons_the_upload(
    target: RcloneTarget, remote: tuple[str, Path], tmp_path: Path
) -> None:
    target.context.stop.set()
    with pytest.raises(TransientError, match="stopping"):
        target.export(item(tmp_path, b"%PDF-1.4 stop\n", "stop.pdf"))
    assert not remote[1].exists() or files(remote[1]) == []


@pytest.mark.parametrize("name", ["../x.pdf", "/abs.pdf", "a/../../b.pdf", "c\x00.pdf"])
def test_hostile_names_are_refused(
    target: RcloneTarget, remote: tuple[str, Path], name: str, tmp_path: Path
) -> None:
    with pytest.raises(PermanentError, match="refusing remote name"):
        target.export(item(tmp_path, b"x", name))
    assert not remote[1].exists() or files(remote[1]) == []


def test_unknown_remote_is_permanent(rclone_remotes: RcloneRemotes, tmp_path: Path) -> None:
    t = make(tmp_path, remote="nosuch:x", config=rclone_remotes.config)
    with pytest.raises(PermanentError, match="didn't find section"):
        t.check()


#: The errors are classified alike in both modes: rclone rcd (the default) and
#: one rclone process per step (``persistent: false``).
both_modes = pytest.mark.parametrize("persistent", [False, True], ids=["cli", "rcd"])


def test_default_mode_is_one_rclone_rcd(tmp_path: Path) -> None:
    assert make(tmp_path, remote="loc:/x").options.persistent is True
    assert RcloneTarget.default_concurrency == 8


@both_modes
def test_wrong_webdav_password_is_permanent(
    rclone_remotes: RcloneRemotes, tmp_path: Path, persistent: bool
) -> None:
    secret = "wrong-password-42"
    config = write_config(
        tmp_path / "bad.conf",
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
    t = make(tmp_path, remote="dav:x", config=config, persistent=persistent)
    with pytest.raises(PermanentError) as caught:
        t.check()
    t.close()
    assert "401" in str(caught.value) or "nauthori" in str(caught.value)
    assert secret not in str(caught.value)


@both_modes
@pytest.mark.parametrize(("status", "error"), [(503, TransientError), (403, PermanentError)])
def test_webdav_server_errors_are_classified(
    fault_server: FaultServer,
    rclone_remotes: RcloneRemotes,
    tmp_path: Path,
    status: int,
    error: type[Exception],
    persistent: bool,
) -> None:
    fault_server.set(status)
    config = write_config(
        tmp_path / "fault.conf",
        rclone_remotes.program,
        {"f": {"type": "webdav", "url": fault_server.url, "vendor": "other"}},
    )
    t = make(tmp_path, remote="f:x", config=config, persistent=persistent)
    with pytest.raises(error, match=str(status)):
        t.export(item(tmp_path, b"x", "a.pdf"))
    t.close()


@both_modes
def test_connection_refused_is_transient(
    rclone_remotes: RcloneRemotes, tmp_path: Path, persistent: bool
) -> None:
    from helpers import free_port

    config = write_config(
        tmp_path / "refused.conf",
        rclone_remotes.program,
        {"f": {"type": "webdav", "url": f"http://127.0.0.1:{free_port()}/", "vendor": "other"}},
    )
    t = make(tmp_path, remote="f:x", config=config, persistent=persistent)
    with pytest.raises(TransientError, match="connection refused"):
        t.check()
    t.close()


@both_modes
def test_missing_program_is_permanent(tmp_path: Path, persistent: bool) -> None:
    t = make(tmp_path, remote="loc:/x", rclone="/nonexistent/rclone", persistent=persistent)
    with pytest.raises(PermanentError, match="apt-get install rclone"):
        t.check()


@pytest.mark.parametrize(
    ("code", "stderr", "error"),
    [
        (5, "ERROR : Failed to copy: something", TransientError),
        (8, "", TransientError),
        (10, "", TransientError),
        (-9, "", TransientError),
        (2, "Error: unknown flag: --bogus", PermanentError),
        (3, "directory not found", PermanentError),
        (4, "object not found", PermanentError),
        (6, "Failed to copy: 461 blocked", PermanentError),
        (7, "Failed to copy: account suspended", PermanentError),
        (1, "Failed to copy: 403 Forbidden", PermanentError),
        (1, "Failed to copy: insufficient storage (507)", PermanentError),
        (1, "Failed to copy: Put: 503 Service Unavailable", TransientError),
        (1, "Failed to copy: something nobody knows", TransientError),
    ],
)
def test_exit_code_classification(code: int, stderr: str, error: type[Exception]) -> None:
    result = classify_exit(code, "2024/01/01 10:00:00 " + stderr, "rcat")
    assert type(result) is error
    assert f"exit {code}" in str(result)
    if stderr:
        assert stderr in str(result), "rclone's reason must be kept, without the timestamp"
    assert "2024/01/01" not in str(result)


def test_sanitize_component(tmp_path: Path) -> None:
    t = make(tmp_path, remote="gdrive:Invoices")
    assert t.sanitize_component('a\\b:c*d?e"f<g>h|i .pdf') == "a_b_c_d_e_f_g_h_i .pdf"
    assert t.sanitize_component("Beleg. ") == "Beleg__"
    assert t.sanitize_component("Müller #1 (Kopie).pdf") == "Müller #1 (Kopie).pdf"


def test_options_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="NAME:path"):
        RcloneOptions(remote="/just/a/path")
    with pytest.raises(ValidationError, match=r"'\.\.'"):
        RcloneOptions(remote="gdrive:a/../b")
    with pytest.raises(ValidationError, match="set by invoicesync"):
        RcloneOptions(remote="gdrive:", extra_args=["--config=/etc/x"])
    with pytest.raises(ValidationError, match="does not exist"):
        RcloneOptions.model_validate({"remote": "gdrive:", "config": str(tmp_path / "nope")})
    assert RcloneOptions(remote=":local:/srv/x/").remote == ":local:/srv/x"
    assert RcloneOptions(remote="gdrive:").remote == "gdrive:"
    o = RcloneOptions.model_validate({"remote": "gdrive:", "config_password": "s3cret"})
    assert "s3cret" not in repr(o)


_RCD_CHILD = """
import sys, time
from invoicesync.connectors_builtin.rclone.rcd import RcdServer
from invoicesync.connectors_builtin.rclone.target import classify_message
rcd = RcdServer([sys.argv[1], "--config", sys.argv[2]], {}, timeout=5, transfer_timeout=60,
                classify=classify_message)
print(rcd._proc.pid, flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; its reaper may just not have run yet


def test_rclone_rcd_does_not_outlive_a_killed_invoicesync(
    rclone_remotes: RcloneRemotes, tmp_path: Path
) -> None:
    """The default mode keeps an rclone rcd; a kill -9 of its parent must not orphan it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    child = subprocess.Popen(
        [sys.executable, "-c", _RCD_CHILD, rclone_remotes.program, str(rclone_remotes.config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        rcd_pid = int(child.stdout.readline())
        assert _running(rcd_pid)
        child.kill()  # SIGKILL: no finalizer, no close()
        child.wait(30)
        deadline = time.monotonic() + 30
        while _running(rcd_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(rcd_pid), "rclone rcd outlived the process that started it"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_rclone_rcd_statistics_are_reset_so_its_memory_stays_flat(
    rclone_remotes: RcloneRemotes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rclone rcd remembers every transfer (~70 KB each); the target resets that record."""
    from invoicesync.connectors_builtin.rclone import rcd as rcd_module
    from invoicesync.connectors_builtin.rclone.target import classify_message

    monkeypatch.setattr(rcd_module, "STATS_RESET_EVERY", 5)
    server = rcd_module.RcdServer(
        [rclone_remotes.program, "--config", str(rclone_remotes.config)],
        dict(os.environ),
        timeout=5,
        transfer_timeout=60,
        classify=classify_message,
    )
    root = rclone_remotes.local_root / f"s-{uuid.uuid4().hex[:8]}"
    try:
        for n in range(7):
            server.upload(f"loc:{root}", "", f"{n}.pdf", io.BytesIO(b"x" * 100))
        stats = server.call("core/stats", {})
    finally:
        server.close()
    assert sorted(p.name for p in root.iterdir()) == [f"{n}.pdf" for n in range(7)]
    # Reset after the fifth upload: rclone counts only the two since.
    assert stats["transfers"] == 2
