"""Folders inside one another are a configuration error (issue 10 item 5), through the CLI.

An export folder inside a source folder re-imported its own exports on every
sync (in watch mode until the disk was full); the state folder inside a
source imported the catalog's blobs. ``check-config``, ``sync`` and ``run``
refuse such a configuration with exit 2, naming both folders and the lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.cli import run_cli, write_config


def config(tmp_path: Path, state: str, source: str, export: str, recursive: bool = True) -> Path:
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    return write_config(
        tmp_path / "invoicesync.yaml",
        f"""version: 1
timezone: Europe/Berlin
state: {state}
sources:
  - id: inbox
    type: folder
    options:
      path: {source}
      recursive: {str(recursive).lower()}
exports:
  - id: archive
    type: folder
    schedule: {{every: 1h}}
    options:
      path: {export}
""",
    )


# (state, source, export, line blamed, what the message says)
CASES = [
    ("./state", "./data", "./data/out", 15, "the folder of export 'archive' {t}/data/out lies "
     "inside the folder of source 'inbox' {t}/data (sources[0].options.path, line 8): every "
     "sync would import its own exports again; keep them apart"),
    ("./state", "./data/in", "./data", 15, "the folder of export 'archive' {t}/data contains "
     "the folder of source 'inbox' {t}/data/in (sources[0].options.path, line 8)"),
    ("./state", "./same", "./same", 15, "the folder of export 'archive' {t}/same is the folder "
     "of source 'inbox' {t}/same"),
    ("./data/state", "./data", "./out", 8, "the folder of source 'inbox' {t}/data contains the "
     "state folder {t}/data/state (state, line 3): the source would import the catalog's own "
     "files; keep them apart"),
    ("./var", "./var/inbox", "./out", 8, "the folder of source 'inbox' {t}/var/inbox lies inside "
     "the state folder {t}/var (state, line 3)"),
    ("./out/state", "./inbox", "./out", 15, "the folder of export 'archive' {t}/out contains the "
     "state folder {t}/out/state (state, line 3): exports would be written among the catalog's "
     "files; keep them apart"),
    ("./var", "./inbox", "./var/out", 15, "the folder of export 'archive' {t}/var/out lies inside "
     "the state folder {t}/var (state, line 3)"),
    ("./state", "./linked", "./elsewhere/out", 15, "the folder of export 'archive' "
     "{t}/elsewhere/out lies inside the folder of source 'inbox' {t}/linked"),
]  # fmt: skip


@pytest.mark.parametrize(("state", "source", "export", "line", "message"), CASES)
def test_check_config_refuses_folders_inside_one_another(
    tmp_path: Path, state: str, source: str, export: str, line: int, message: str
) -> None:
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")  # a link cannot hide an overlap
    cfg = config(tmp_path, state, source, export)
    result = run_cli("check-config", config=cfg)
    assert result.returncode == 2, result.stdout + result.stderr
    expected = message.format(t=tmp_path)
    output = result.stdout + result.stderr
    assert re.search(rf"invoicesync\.yaml:{line}: \S+: ", output), output
    assert expected in output, output
    assert "Traceback" not in result.stdout + result.stderr


def test_sync_and_run_refuse_it_too_and_touch_nothing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.pdf").write_bytes(b"%PDF-1.4")
    cfg = config(tmp_path, "./state", "./data", "./data/out")
    for command in ("sync", "run"):
        result = run_cli(command, config=cfg, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "every sync would import its own exports again" in result.stdout + result.stderr
    assert not (tmp_path / "data" / "out").exists()
    assert not (tmp_path / "state").exists()


def test_an_export_below_a_flat_source_is_fine(tmp_path: Path) -> None:
    # A source that is not recursive never enters sub-folders: no loop.
    cfg = config(tmp_path, "./state", "./data", "./data/out", recursive=False)
    result = run_cli("check-config", config=cfg)
    assert result.returncode == 0, result.stdout + result.stderr
