"""What a person at a terminal sees (issue 14 item 7), driven through a real pty.

On a TTY: no log line per document (they are debug events there), a progress
bar per phase with its count of total, rate and ETA, one summary table at the
end, and a configuration error printed once. Off a TTY nothing changes: JSON
lines on stderr, one result line per phase on stdout.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

from fixtures.cli import command, run_cli, write_config

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r")
COUNT = 40


def _config(tmp_path: Path, count: int = COUNT) -> Path:
    return write_config(
        tmp_path / "invoicesync.yaml",
        f"""version: 1
timezone: Europe/Berlin
state: ./state
companies: [{{id: acme}}, {{id: telekom}}, {{id: officeplus}}, {{id: cloudhost}}, {{id: railways}}]
sources: [{{id: demo, type: demo, options: {{count: {count}, seed: 5}}}}]
exports:
  - id: archive
    type: folder
    options: {{path: ./out}}
""",
    )


def run_in_pty(args: list[str], cwd: Path, columns: int = 200) -> tuple[int, str]:
    """Run ``invoicesync ARGS`` with stdin, stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "INVOICESYNC_PLUGINS": "", "TERM": "xterm-256color", "COLUMNS": ""}
    env.pop("COLUMNS")
    proc = subprocess.Popen(
        [*command(), *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError as exc:  # EIO: the child closed its end
            if exc.errno != errno.EIO:
                raise
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    code = proc.wait(timeout=120)
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def test_sync_on_a_terminal_shows_bars_and_one_summary_table(tmp_path: Path) -> None:
    config = _config(tmp_path)
    code, screen = run_in_pty(["--config", str(config), "sync"], tmp_path)
    assert code == 0, screen
    # No log line per document; no JSON.
    assert "document.exported" not in screen and "document.imported" not in screen, screen
    assert '{"' not in screen
    # The export bar knows its total and shows a rate and the time left.
    assert re.search(rf"export archive .*{COUNT} of {COUNT}", screen), screen
    assert "/s" in screen and "ETA" in screen
    # The import phase has a bar too (sources cannot say their total up front).
    assert re.search(rf"import demo .*\b{COUNT}\b", screen), screen
    # One summary table at the end, instead of one line per phase.
    assert screen.count("summary") == 1
    assert re.search(rf"│ import\s+│ demo\s+│ {COUNT} new, 0 changed, 0 failed", screen), screen
    assert re.search(rf"│ export\s+│ archive\s+│ {COUNT} exported, 0 failed", screen), screen
    assert "export archive: " not in screen  # not the piped form


def test_off_a_terminal_json_lines_and_result_lines_are_unchanged(tmp_path: Path) -> None:
    result = run_cli("sync", config=_config(tmp_path))
    assert result.returncode == 0
    assert len(result.events("document.exported")) == COUNT
    assert len(result.events("document.imported")) == COUNT
    assert all(line.startswith("{") for line in result.stderr.splitlines())
    assert result.stdout.splitlines() == [
        f"import demo: {COUNT} new, 0 changed, 0 failed",
        f"export archive: {COUNT} exported, 0 failed, 0 rejected, 0 excluded",
    ]


def test_a_configuration_error_is_printed_once_on_a_terminal(tmp_path: Path) -> None:
    config = write_config(tmp_path / "invoicesync.yaml", "version: 1\ntimezon: UTC\n")
    code, screen = run_in_pty(["--config", str(config), "check-config"], tmp_path)
    assert code == 2
    assert screen.count("timezon: unknown key (did you mean 'timezone'?)") == 1, screen
    assert "config.invalid" not in screen  # the text, not a log line repeating it


def test_documents_says_how_many_it_left_out(tmp_path: Path) -> None:
    config = _config(tmp_path, count=120)
    assert run_cli("sync", config=config).returncode == 0
    listed = run_cli("documents", config=config, env={"COLUMNS": "200"})
    assert listed.returncode == 0
    assert listed.stdout.rstrip().endswith("100 of 120 documents shown (use --limit 0 for all)")
    every = run_cli("documents", "--limit", "0", config=config, env={"COLUMNS": "200"})
    assert "documents shown" not in every.stdout
    assert every.stdout.count("demo/") == 120
    as_json = run_cli("documents", "--json", "--limit", "7", config=config)
    assert len(as_json.stdout.splitlines()) == 7
    assert "7 of 120 documents shown (use --limit 0 for all)" in as_json.stderr
