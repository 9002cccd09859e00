"""docs/deploy.md, followed literally as root, in a private mount namespace.

The guide's install block runs as written (bash, ``set -e``) in a copy of the
checkout, with ``/etc``, ``/opt`` and ``/var/lib`` overlaid by throw-away
folders, so nothing on the machine changes. ``apt-get`` and ``systemctl`` are
stand-ins that record their arguments (no systemd runs in CI); the unit is
then "started" the way systemd would: its ``Environment=``, ``StateDirectory=``
and ``WorkingDirectory=``, ``/etc`` and ``/opt`` read-only
(``ProtectSystem=strict``), and its ``ExecStart=`` command line.

The original bug (issue 14): a configuration whose ``state:`` resolves under
read-only ``/etc`` crashed with a raw ``OSError`` traceback and exit 1, which
``Restart=on-failure`` restarted for ever.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deploy.md"
UNIT = ROOT / "packaging" / "systemd" / "invoicesync.service"


def install_block() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Install", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "docs/deploy.md: no ```sh block under ## Install"
    return match.group(1)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith(("#", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _require_namespaces() -> None:
    if os.geteuid() != 0:
        skip_or_fail("the deploy guide runs as root (mount namespaces, /etc, /opt)")
    # A private mount namespace with overlay and read-only bind mounts.
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            "set -e; mount -t tmpfs none /mnt; mkdir /mnt/u /mnt/w; "
            "mount -t overlay overlay -o lowerdir=/opt,upperdir=/mnt/u,workdir=/mnt/w /opt; "
            "mount -o remount,bind,ro /opt",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        skip_or_fail(f"no private mount namespace here: {probe.stderr.strip()}")


def test_the_unit_does_not_restart_on_a_configuration_error() -> None:
    unit = unit_settings()
    assert unit["RestartPreventExitStatus"] == ["2"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"][0].split()[0] == "invoicesync"
    # The guide installs the configuration where the unit reads it.
    config = "/etc/invoicesync/invoicesync.yaml"
    assert f"INVOICESYNC_CONFIG={config}" in unit["Environment"]
    assert f"--config {config} run" in unit["ExecStart"][0]
    assert f"install -m 0644 packaging/invoicesync.yaml {config}" in install_block()
    assert "pip install invoicesync" not in GUIDE.read_text(encoding="utf-8")


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A copy of the checkout, stand-in programs, and the overlay upper folders."""
    _require_namespaces()
    checkout = tmp_path / "checkout"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            dst = checkout / name.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    shims = tmp_path / "shims"
    shims.mkdir()
    for program in ("apt-get", "systemctl"):
        shim = shims / program
        shim.write_text(f'#!/bin/sh\necho "{program} $*" >> {tmp_path}/calls.log\n')
        shim.chmod(0o755)
    (tmp_path / "home").mkdir()
    return tmp_path


def _namespace_script(tmp: Path, body: str) -> str:
    """Overlay /etc, /opt and /var/lib with folders under ``tmp``, then ``body``."""
    lines = ["set -euo pipefail"]
    for target in ("/etc", "/opt", "/var/lib"):
        name = target.strip("/").replace("/", "-")
        upper, work = tmp / "overlay" / name, tmp / "overlay" / f"{name}.work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        lines.append(
            f"mount -t overlay overlay -o lowerdir={target},upperdir={upper},workdir={work} "
            f"{target}"
        )
    lines.append(body)
    return "\n".join(lines) + "\n"


def _service_command(unit: dict[str, list[str]]) -> str:
    """What systemd does when it starts the unit, as far as files and environment go."""
    env = " ".join(shlex.quote(e) for e in unit["Environment"])
    folders = [f"/var/lib/{name}" for name in unit["StateDirectory"][0].split()]
    state = ":".join(folders)  # systemd passes every StateDirectory=, colon-separated
    return (
        f"mkdir -p {' '.join(folders)} && cd {unit['WorkingDirectory'][0]}\n"
        # ProtectSystem=strict: everything read-only but the state directory.
        "mount -o remount,bind,ro /etc && mount -o remount,bind,ro /opt\n"
        f"exec env -i PATH=/usr/bin:/bin HOME=/nonexistent STATE_DIRECTORY={state} {env} "
        f"{unit['ExecStart'][0]}"
    )


def test_following_the_deploy_guide_gives_a_running_service(sandbox: Path) -> None:
    tmp = sandbox
    unit = unit_settings()
    guide = install_block()
    script = _namespace_script(
        tmp,
        f"cd {tmp / 'checkout'}\n"
        f"export PATH={tmp / 'shims'}:$PATH HOME={tmp / 'home'} EDITOR=true\n"
        f"{guide}\n"
        f"test -f /etc/systemd/system/invoicesync.service\n"
        f"{_service_command(unit)}\n",
    )
    proc = subprocess.Popen(
        ["unshare", "-m", "bash", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    events: list[dict[str, object]] = []
    other: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if not line.startswith("{"):
                other.append(line)
                continue
            event = json.loads(line)
            events.append(event)
            if event["event"] == "export.finished" and event.get("exported"):
                # The first after_import export comes right after the start,
                # possibly before the first import; this one delivered documents.
                os.killpg(proc.pid, signal.SIGTERM)
                break
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    names = [e["event"] for e in events]
    assert names[-1] == "export.finished", (names, "".join(other[-40:]))
    finished = events[-1]
    assert finished["account"] == "archive" and finished["exported"] > 0, finished
    assert rc == 0, "".join(other[-40:])
    calls = (tmp / "calls.log").read_text()
    assert "systemctl enable --now invoicesync" in calls
    # The service wrote only to its state directory.
    state = tmp / "overlay" / "var-lib" / "invoicesync"
    assert (state / "catalog.sqlite3").exists()
    assert any((tmp / "overlay" / "var-lib" / "invoicesync-archive").rglob("*.pdf"))
    assert not (tmp / "overlay" / "etc" / "invoicesync" / "var").exists()


def test_a_state_folder_under_read_only_etc_is_one_event_and_exit_2(tmp_path: Path) -> None:
    """The original crash loop: config.example.yaml installed into /etc/invoicesync."""
    _require_namespaces()
    etc = tmp_path / "etc-invoicesync"
    etc.mkdir()
    shutil.copy(ROOT / "config.example.yaml", etc / "invoicesync.yaml")
    exe = Path(sys.executable).parent / "invoicesync"
    script = (
        f"mount --bind -o ro {etc} {etc}\n"
        f"exec {exe} --config {etc / 'invoicesync.yaml'} --log-format json run\n"
    )
    env = {**os.environ, "INVOICESYNC_PLUGINS": ""}
    proc = subprocess.run(
        ["unshare", "-m", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # one event, no traceback
    event = json.loads(lines[0])
    assert event["event"] == "config.invalid"
    assert event["level"] == "error"
    (problem,) = event["problems"]
    assert f"state folder {etc}/var/invoicesync: Read-only file system" in problem
    assert "leave it out to use $STATE_DIRECTORY" in problem
    assert not (etc / "var").exists()
