"""End to end: ``invoicesync sync`` from the demo portal into Paperless-ngx.

Runs the real command line in a subprocess against the fake Paperless-ngx,
with the plugin found through its entry point -- exactly what a user gets
after ``pip install invoicesync-paperless``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_paperless import FakePaperless

CONFIG = """\
version: 1
timezone: Europe/Berlin
state: ./state
log: {{format: json, level: info}}
companies:
  - {{id: acme, name: ACME Bürobedarf GmbH}}
  - {{id: telekom, name: Deutsche Telekom AG}}
  - {{id: officeplus, name: OfficePlus Supplies Ltd}}
  - {{id: cloudhost, name: CloudHost Inc.}}
  - {{id: railways, name: National Railways}}
sources:
  - id: demo
    type: demo
    options: {{count: 5}}
exports:
  - id: pl
    type: paperless
    filename: "{{company}} {{type}} {{number}}.{{ext}}"
    retry: {{attempts: {attempts}, initial: 1s}}
    options:
      url: {url}
      token: env:PAPERLESS_TEST_TOKEN
      tags: [invoicesync]
      poll_interval: 0.01
      correspondents: {{acme: ACME Bürobedarf GmbH}}
"""


def invoicesync(config: Path, *args: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAPERLESS_TEST_TOKEN": token, "INVOICESYNC_PLUGINS": "paperless"}
    return subprocess.run(
        [sys.executable, "-m", "invoicesync.daemon.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def cli_available() -> None:
    if importlib.util.find_spec("invoicesync.daemon.cli") is None:
        pytest.skip("invoicesync's command line (invoicesync.daemon.cli) is not installed")


def test_sync_exports_the_demo_portal_into_paperless_once(
    cli_available: None, paperless: FakePaperless, tmp_path: Path
) -> None:
    config = tmp_path / "invoicesync.yaml"
    config.write_text(CONFIG.format(url=paperless.url, attempts=4))

    listed = invoicesync(config, "plugins", "--json", token=paperless.token)
    assert listed.returncode == 0, listed.stderr
    plugin = next(p for p in json.loads(listed.stdout) if p["name"] == "paperless")
    assert plugin["targets"] == ["paperless"] and plugin["version"] == "0.1.0"

    first = invoicesync(config, "sync", token=paperless.token)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(paperless.documents) == 5
    titles = sorted(d.title for d in paperless.documents.values())
    assert all(" " in t for t in titles), titles  # "{company} {type} {number}"
    for doc in paperless.documents.values():
        assert doc.content.startswith(b"%PDF")
        assert "invoicesync" in paperless.names("tags", doc.tags)
    assert paperless.token not in first.stdout + first.stderr

    # Idempotent: a second sync exports nothing new and uploads nothing.
    uploads = paperless.uploads
    second = invoicesync(config, "sync", token=paperless.token)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(paperless.documents) == 5 and paperless.uploads == uploads


def test_a_wrong_token_fails_the_sync_without_leaking_it(
    cli_available: None, paperless: FakePaperless, tmp_path: Path
) -> None:
    config = tmp_path / "invoicesync.yaml"
    # A refused token is transient (fix the token, and the documents go);
    # one attempt keeps the test from waiting through the back-off.
    config.write_text(CONFIG.format(url=paperless.url, attempts=1))
    result = invoicesync(config, "sync", token="wrong-token-d41d8cd9")
    assert result.returncode == 1, result.stdout + result.stderr
    assert paperless.documents == {}
    assert "wrong-token-d41d8cd9" not in result.stdout + result.stderr
