"""Hostile YAML: alias bombs, deep nesting, huge files (issue 10 item 4).

A 753-byte "billion laughs" file drove `check-config` past 6 GB, a 5,000-deep
nesting gave a RecursionError traceback. Each is now refused with file:line and
exit 2 (and `config.invalid` on SIGHUP, the running configuration kept), and
memory stays bounded: the commands run under an address-space limit that the
old loader blew through.
"""

from __future__ import annotations

import re
import resource
import signal
import subprocess
from pathlib import Path

from fixtures.cli import command, write_config
from fixtures.daemon_proc import DaemonProcess
from fixtures.daemon_proc import write_config as write_json_config

# Enough for the interpreter, rich, SQLAlchemy and pydantic (about 300 MB of
# address space); the old loader needed gigabytes for the bomb below.
ADDRESS_SPACE = 1024 * 1024 * 1024

VALID = """version: 1
state: ./state
sources:
  - id: inbox
    type: folder
    options: {path: ./inbox}
"""


def billion_laughs() -> str:
    """The classic: nine levels of nine aliases, 9**9 strings once expanded (~750 bytes)."""
    lines = ['x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"x-{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return VALID + "\n".join(lines) + "\n"


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "--config", str(config), "check-config"],
        capture_output=True, text=True, timeout=120, cwd=config.parent, preexec_fn=_limit,
    )


def test_a_valid_file_loads_under_the_memory_limit(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    proc = check_config(write_config(tmp_path / "invoicesync.yaml", VALID))
    assert proc.returncode == 0, proc.stderr


def test_billion_laughs_is_refused_with_file_and_line(tmp_path: Path) -> None:
    text = billion_laughs()
    assert len(text.encode()) < 1000
    proc = check_config(write_config(tmp_path / "invoicesync.yaml", text))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert re.search(r"invoicesync\.yaml:1[0-9]: .*aliases expand to more than", proc.stderr), (
        proc.stderr
    )


def test_deep_nesting_is_refused_without_a_traceback(tmp_path: Path) -> None:
    for opener, closer in (("[", "]"), ("{a: ", "}")):
        text = VALID + "x-deep: " + opener * 5000 + "1" + closer * 5000 + "\n"
        proc = check_config(write_config(tmp_path / "invoicesync.yaml", text))
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
        assert re.search(r"invoicesync\.yaml:7: .*nested deeper than \d+ levels", proc.stderr), (
            proc.stderr[-2000:]
        )
    # Block style too: 300 indented levels (5,000 would exceed the size limit first).
    text = VALID + "".join(f"{' ' * i}k{i}:\n" for i in range(300)) + " " * 300 + "v\n"
    proc = check_config(write_config(tmp_path / "invoicesync.yaml", text))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "nested deeper than" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    text = VALID + ("# padding padding padding padding padding padding padding\n" * 40_000)
    proc = check_config(write_config(tmp_path / "invoicesync.yaml", text))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.search(r"invoicesync\.yaml: the file is \d+ bytes; at most \d+ ", proc.stderr)


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    proc = check_config(write_config(tmp_path / "invoicesync.yaml", VALID + "x-r: &r [1, *r]\n"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert re.search(r"invoicesync\.yaml:7: ", proc.stderr), proc.stderr


def test_sighup_with_an_alias_bomb_keeps_the_running_configuration(
    tmp_path: Path, start_daemon: object
) -> None:
    (tmp_path / "inbox").mkdir()
    cfg = write_json_config(tmp_path / "invoicesync.yaml", {
        "version": 1,
        "state": "./state",
        "log": {"format": "json", "level": "info"},
        "daemon": {"jitter": "0s"},
        "sources": [{"id": "inbox", "type": "folder", "schedule": {"every": "1h"},
                     "options": {"path": "./inbox"}}],
        "exports": [{"id": "out", "type": "folder", "schedule": {"after_import": True},
                     "filename": "{filename}.{ext}", "options": {"path": "./out"}}],
    })
    d: DaemonProcess = start_daemon(cfg)  # type: ignore[operator]
    d.wait_event("import.finished")
    # Bound the daemon's memory from here on: what it uses now plus 512 MB.
    size = _vm(d.proc.pid, "VmSize")
    limit = size + 512 * 1024 * 1024
    resource.prlimit(d.proc.pid, resource.RLIMIT_AS, (limit, limit))

    cfg.write_text(billion_laughs().replace("state: ./state", "state: ./state\nx-z: 1"))
    mark = d.mark()
    d.signal(signal.SIGHUP)
    invalid = d.wait_event("config.invalid", after=mark)
    assert "aliases expand to more than" in " ".join(invalid["problems"])
    assert invalid["action"] == "kept the running configuration"
    assert d.proc.poll() is None
    assert _vm(d.proc.pid, "VmHWM") < limit
    code, _ = d.stop()
    assert code == 0


def _vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")
