"""The command line on plugin sets: listing, tracing, and refusing to start half-loaded.

Real plugin distributions (tests/fixtures/plugin_dists.py) are put on the
subprocess's PYTHONPATH, so ``importlib.metadata`` finds their entry points the
way it finds a pip-installed plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.plugin_dists import InstallPlugin

TARGET_PLUGIN = """
from invoicesync.plugins import ConnectorOptions, ExportResult, Target, hookimpl

class Opts(ConnectorOptions):
    url: str = "http://example.invalid"

class Echo(Target[Opts]):
    type_name = "echo"
    Options = Opts
    def export(self, item):
        return ExportResult(item.remote_name)

@hookimpl
def invoicesync_register_targets():
    return [Echo]
"""

CONFIG = """\
version: 1
state: ./state
log: {format: json, level: info}
sources:
  - {id: demo, type: demo, options: {count: 2}}
exports:
  - {id: archive, type: folder, options: {path: ./export}}
"""


def invoicesync(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "invoicesync.yaml"
    if not config.exists():
        config.write_text(CONFIG)
    return subprocess.run(
        [sys.executable, "-m", "invoicesync.daemon.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(autouse=True)
def only_test_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    # Plugins installed in this environment (the example package...) stay out.
    monkeypatch.setenv("INVOICESYNC_PLUGINS", "echo,broken")


def test_plugins_json_lists_an_installed_plugin(
    install_plugin: InstallPlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVOICESYNC_PLUGINS", "echo")
    module = install_plugin("echo", TARGET_PLUGIN, dist="invoicesync-echo", version="1.2.3")
    result = invoicesync(tmp_path, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["echo"] == {
        "name": "echo",
        "version": "1.2.3",
        "builtin": False,
        "module": module,
        "hooks": ["invoicesync_register_targets"],
        "sources": [],
        "targets": ["echo"],
        "checks": [],
        "extractors": [],
        "missing": {},  # connectors whose `requires` are not installed
    }
    assert plugins["folder"]["builtin"] and plugins["folder"]["targets"] == ["folder"]


def test_tracing_logs_hook_calls_with_plugin_names(
    install_plugin: InstallPlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVOICESYNC_PLUGINS", "echo")
    install_plugin("echo", TARGET_PLUGIN)
    quiet = invoicesync(tmp_path, "plugins", "--json")
    traced = invoicesync(tmp_path, "plugins", "--json", env={"INVOICESYNC_TRACE_PLUGINS": "1"})
    assert traced.returncode == 0, traced.stderr
    assert "invoicesync_register_targets" not in quiet.stderr
    lines = [json.loads(line) for line in traced.stderr.splitlines() if line.startswith("{")]
    details = [line.get("detail", "") for line in lines if line.get("event") == "plugin.hook_call"]
    assert "hook invoicesync_register_targets -> echo returned [Echo]" in details
    assert any(
        d.startswith("hook invoicesync_register_sources -> demo returned [") for d in details
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import no_such_module_abc\n", "plugin 'broken' (invoicesync-test-plugin 1.0) failed"),
        (
            TARGET_PLUGIN.replace("Options = Opts", "Options = dict"),
            "plugin 'broken' (invoicesync_register_targets): Echo.Options must be a pydantic",
        ),
    ],
    ids=["import-error", "options-not-a-model"],
)
@pytest.mark.parametrize("command", ["run", "check-config"])
def test_the_daemon_does_not_start_on_a_broken_plugin(
    install_plugin: InstallPlugin, tmp_path: Path, code: str, message: str, command: str
) -> None:
    from invoicesync.daemon.cli import main

    if command not in main.commands:  # type: ignore[attr-defined]
        pytest.skip(f"this build of the command line has no {command!r} command yet")
    install_plugin("echo", TARGET_PLUGIN)
    install_plugin("broken", code)
    result = invoicesync(tmp_path, command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "daemon.started" not in result.stderr
    assert not (tmp_path / "state").exists(), "nothing may run on a half-loaded plugin set"
