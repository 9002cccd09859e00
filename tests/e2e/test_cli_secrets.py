"""`invoicesync secret set/delete` with a real (file-based) keyring backend."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fixtures.cli import command, run_cli, write_config

SECRET = "s3cr3t-Value-for-the-test"


def keyring_env(tmp_path: Path) -> dict[str, str]:
    # keyrings.alt's plaintext backend keeps its file under XDG_DATA_HOME.
    return {
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def test_secret_set_is_used_by_keyring_refs_and_never_printed(tmp_path: Path) -> None:
    env = keyring_env(tmp_path)
    proc = subprocess.run(
        [*command(), "secret", "set", "--allow-insecure-keyring", "webdav-password"],
        input=f"{SECRET}\n", capture_output=True, text=True, timeout=60,  # a pipe: once
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    assert "keyring:webdav-password" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr

    config = write_config(tmp_path / "invoicesync.yaml", """version: 1
state: ./state
exports:
  - id: cloud
    type: webdav
    options: {url: "http://127.0.0.1:9/dav/", username: me, password: "keyring:webdav-password"}
""")
    ok = run_cli("check-config", config=config, env=env)
    assert ok.returncode == 0, ok.stderr
    connect = run_cli("check-config", "--connect", config=config, env=env)
    assert connect.returncode == 1  # nothing listens on port 9
    assert SECRET not in connect.stdout + connect.stderr

    deleted = run_cli("secret", "delete", "webdav-password", env=env)
    assert deleted.returncode == 0, deleted.stderr
    missing = run_cli("check-config", config=config, env=env)
    assert missing.returncode == 2
    assert "exports[0].options.password" in missing.stderr
    assert "webdav-password" in missing.stderr


def test_secret_set_refuses_a_plain_text_keyring(tmp_path: Path) -> None:
    """keyrings.alt's PlaintextKeyring keeps secrets base64-encoded in a file:
    `secret set` refuses it unless the user opts in explicitly, and says so loudly."""
    env = keyring_env(tmp_path)
    proc = subprocess.run(
        [*command(), "secret", "set", "imap-password"],
        input=f"{SECRET}\n{SECRET}\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, **env},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "keyrings.alt.file.PlaintextKeyring" in proc.stderr
    assert "plain text" in proc.stderr
    assert "--allow-insecure-keyring" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    # Nothing was written anywhere under the keyring's data folder.
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))

    opted_in = subprocess.run(
        [*command(), "secret", "set", "--allow-insecure-keyring", "imap-password"],
        input=f"{SECRET}\n", capture_output=True, text=True, timeout=60,  # a pipe: once
        env={**os.environ, **env},
    )
    assert opted_in.returncode == 0, opted_in.stderr
    assert "warning:" in opted_in.stderr and "plain text" in opted_in.stderr.lower()
    assert SECRET not in opted_in.stdout + opted_in.stderr
