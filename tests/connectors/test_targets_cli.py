"""sftp and email accounts through the real CLI: check-config --connect, then sync."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.smtp_server import PASSWORD, SmtpServer
from fixtures.sshd import SshServer

pytestmark = pytest.mark.server

COUNT = 6


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMTP_PW": PASSWORD, "CI": os.environ.get("CI", "")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "invoicesync.daemon.cli",
            "--config",
            str(config),
            "--log-format",
            "json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def write_config(tmp_path: Path, sshd: SshServer, smtp: SmtpServer, known_hosts: Path) -> Path:
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        f"""version: 1
timezone: Europe/Berlin
state: ./state
companies:
  - {{id: acme, name: ACME}}
sources:
  - id: demo
    type: demo
    schedule: {{every: 1h}}
    options: {{count: {COUNT}, seed: 7}}
exports:
  - id: files
    type: sftp
    schedule: {{every: 1h}}
    filename: "{{company}}/{{document_date:%Y}}/{{number}}: {{type}}.{{ext}}"
    options:
      host: 127.0.0.1
      port: {sshd.port}
      username: {sshd.key_user}
      private_key: {sshd.user_key}
      known_hosts: {known_hosts.name}
      path: {tmp_path / "remote"}
  - id: mailbox
    type: email
    schedule: {{every: 1h}}
    filename: "{{document_date:%Y-%m-%d}}_{{number}}.{{ext}}"
    options:
      host: 127.0.0.1
      port: {smtp.port}
      security: starttls
      username: mailer
      password: "env:SMTP_PW"
      from: sync@example.test
      to: [inbox@example.test]
      ca_file: {smtp.ca_file}
      subject: "Beleg {{number}}"
"""
    )
    return config


def test_check_connect_then_sync_twice(sshd: SshServer, smtp_factory: Any, tmp_path: Path) -> None:
    smtp: SmtpServer = smtp_factory("starttls")
    config = write_config(tmp_path, sshd, smtp, sshd.known_hosts(tmp_path))
    checked = run(config, "check-config", "--connect")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "✓ export files" in checked.stdout and "✓ export mailbox" in checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr

    first = run(config, "sync")
    assert first.returncode == 0, first.stdout + first.stderr
    remote = tmp_path / "remote"
    files = sorted(p for p in remote.rglob("*") if p.is_file())
    assert len(files) == COUNT
    assert not [p for p in files if p.name.startswith(".")]  # no temporary files left
    assert len(smtp.handler.messages) == COUNT
    for m in smtp.handler.messages:
        msg = email.message_from_bytes(m.content, policy=email.policy.default)
        assert str(msg["Subject"]).startswith("Beleg ")
        assert len(list(msg.iter_attachments())) == 1  # type: ignore[attr-defined]

    second = run(config, "sync")
    assert second.returncode == 0, second.stdout + second.stderr
    assert sorted(p for p in remote.rglob("*") if p.is_file()) == files
    assert len(smtp.handler.messages) == COUNT  # nothing sent twice
    assert PASSWORD not in first.stdout + first.stderr + second.stdout + second.stderr


def test_check_connect_reports_an_unknown_host_key(
    sshd: SshServer, smtp_factory: Any, tmp_path: Path
) -> None:
    smtp: SmtpServer = smtp_factory("starttls")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = write_config(tmp_path, sshd, smtp, empty)
    checked = run(config, "check-config", "--connect")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    out = " ".join(checked.stdout.split())
    assert "✗ export files" in out
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty}" in out
    assert "✓ export mailbox" in out
    assert empty.read_text() == ""
