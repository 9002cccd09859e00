"""``daemon.http`` configuration: loopback unless auth, secret references only, the extra."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.cli import run_cli
from invoicesync.daemon.config import models
from invoicesync.daemon.config.loader import ConfigError, load_config
from invoicesync.daemon.plugin_host import load_plugins


def write(tmp: Path, http: Any) -> Path:
    cfg = tmp / "invoicesync.yaml"
    data = {"version": 1, "timezone": "UTC", "state": "./state", "daemon": {"http": http}}
    cfg.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return cfg


@pytest.mark.parametrize(
    ("http", "message"),
    [
        (
            {"listen": "0.0.0.0:8080"},
            "daemon.http: listen: 0.0.0.0 is not a loopback address; without auth (bearer or "
            "basic) the endpoint listens on 127.0.0.1, ::1 or localhost only",
        ),
        ({"listen": "[::]:8080"}, "daemon.http: listen: :: is not a loopback address"),
        ({"listen": "192.168.1.5:80"}, "192.168.1.5 is not a loopback address"),
        ({"listen": "localhost"}, "expected HOST:PORT such as 127.0.0.1:8080, got 'localhost'"),
        ({"listen": "127.0.0.1:99999"}, "expected HOST:PORT"),
        (
            {"auth": {"bearer": "hunter2-plain"}},
            "daemon.http.auth.bearer: give a secret reference (keyring:NAME, env:VAR or "
            "credential:NAME), never the secret itself",
        ),
        (
            {"auth": {"bearer": "env:A", "basic": {"username": "u", "password": "env:B"}}},
            "daemon.http.auth: give exactly one of bearer or basic",
        ),
        ({"auth": {"bearer": "env:NOT_SET_ANYWHERE_4711"}}, "daemon.http.auth.bearer"),
        ({"tls": True}, "daemon.http.tls: unknown key"),
    ],
)
def test_bad_http_settings_are_configuration_errors(
    tmp_path: Path, http: Any, message: str
) -> None:
    result = run_cli("check-config", config=write(tmp_path, http))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "hunter2-plain" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_public_address_with_auth_is_accepted(tmp_path: Path) -> None:
    cfg = write(tmp_path, {"listen": "0.0.0.0:8080", "auth": {"bearer": "env:STATUS_TOKEN"}})
    result = run_cli("check-config", config=cfg, env={"STATUS_TOKEN": "t0ken-value"})
    assert result.returncode == 0, result.stderr
    assert "t0ken-value" not in result.stdout + result.stderr


def test_the_token_is_resolved_and_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATUS_TOKEN", "t0ken-value")
    cfg = write(tmp_path, {"auth": {"basic": {"username": "ops", "password": "env:STATUS_TOKEN"}}})
    loaded = load_config(cfg, load_plugins(entry_points=False))
    assert loaded.http_auth == {"basic": {"username": "ops", "password": "t0ken-value"}}
    assert "t0ken-value" in loaded.secrets


def test_without_the_web_extra_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "missing_web_modules", lambda: ["starlette", "uvicorn"])
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {}), load_plugins(entry_points=False))
    assert str(caught.value.problems[0]).endswith(
        "daemon.http: the HTTP endpoint needs the 'web' extra (starlette, uvicorn not "
        "installed): pip install 'invoicesync[web]'"
    )


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    cfg = tmp_path / "invoicesync.yaml"
    cfg.write_text('{"version": 1, "state": "./state"}', encoding="utf-8")
    result = run_cli("serve", "--listen", "0.0.0.0:8080", config=cfg)
    assert result.returncode == 2
    assert "--listen: 0.0.0.0 is not a loopback address" in result.stderr
    bad = run_cli("serve", "--listen", "nope", config=cfg)
    assert bad.returncode == 2 and "--listen: expected HOST:PORT" in bad.stderr
