"""The network targets through the command line: config, secrets, check-config --connect, sync."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures.s3_server import S3Server
from fixtures.webdav_server import WebDAVServer
from invoicesync.daemon.cli import main

pytestmark = pytest.mark.server


def write_config(tmp_path: Path, export: str) -> Path:
    config = tmp_path / "invoicesync.yaml"
    config.write_text(
        "version: 1\n"
        "timezone: Europe/Berlin\n"
        "state: ./var\n"
        "companies: [{id: acme, name: ACME}]\n"
        "sources:\n"
        "  - {id: demo, type: demo, options: {count: 12, seed: 3}}\n"
        "exports:\n" + export
    )
    return config


def run(config: Path, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--config", str(config), "--log-format", "json", *args], env=env
    )
    return result.exit_code, result.output


def files(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_webdav_account_with_env_secret(webdav_server: WebDAVServer, tmp_path: Path) -> None:
    folder, local = webdav_server.folder()
    config = write_config(
        tmp_path,
        "  - id: cloud\n"
        "    type: webdav\n"
        '    filename: "{company}/{number}: {type}.{ext}"\n'
        "    options:\n"
        f"      url: {webdav_server.url}\n"
        f"      path: {folder}/Belege\n"
        f"      username: {webdav_server.username}\n"
        "      password: env:DAV_PASSWORD\n"
        "      timeout: 10s\n",
    )
    code, out = run(config, "check-config", "--connect", DAV_PASSWORD=webdav_server.password)
    assert code == 0, out
    code, out = run(config, "sync", DAV_PASSWORD=webdav_server.password)
    assert code == 0, out
    stored = files(local)
    assert len(stored) == 12
    # The target's own rules: ':' is not allowed on Nextcloud, so it became '_'.
    assert all(":" not in name and "_ " in name for name in stored)
    code, out = run(config, "sync", "--no-fetch", DAV_PASSWORD=webdav_server.password)
    assert code == 0, out
    assert files(local) == stored, "a second sync must not add files"

    code, out = run(config, "check-config", "--connect", DAV_PASSWORD="wrong-pass-9876")
    assert code == 1
    assert "401" in out and "wrong-pass-9876" not in out


def test_s3_account(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    config = write_config(
        tmp_path,
        "  - id: bucket\n"
        "    type: s3\n"
        "    options:\n"
        f"      endpoint_url: {s3_server.endpoint_url}\n"
        f"      bucket: {bucket}\n"
        "      prefix: invoices\n"
        "      access_key_id: testing\n"
        "      secret_access_key: env:S3_SECRET\n"
        "      metadata: tags\n",
    )
    code, out = run(config, "check-config", "--connect", S3_SECRET="testing-secret")
    assert code == 0, out
    code, out = run(config, "sync", S3_SECRET="testing-secret")
    assert code == 0, out
    listing = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listing) == 12
    assert all(obj["Key"].startswith("invoices/") for obj in listing)
