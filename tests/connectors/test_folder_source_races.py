"""Files swapped during a folder walk, through the real command line (issue 10 item 1).

Whoever can write into an inbox can change it while the daemon walks it.
Each test lists the inbox, *then* swaps an entry (deterministically: the
listing step is wrapped by ``fixtures/walk_swap.py``), then lets ``sync``
read what the listing promised: a file now a symbolic link to a secret
outside the inbox, a sub-folder now a link to an outside tree, a file or a
sidecar now a FIFO. Nothing outside may be imported or exported, the run
must neither hang nor end early, and each refused entry is a
``document.failed`` event naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fixtures.cli import Result, write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SECRET = b"password=hunter2-outside-the-inbox\n"
CONFIG = """version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - id: inbox
    type: folder
    schedule: {every: 1h}
    options: {path: ./inbox}
exports:
  - id: out
    type: folder
    schedule: {every: 1h}
    filename: "{filename}.{ext}"
    options: {path: ./out}
"""


def sync_with_swaps(tmp_path: Path, swaps: list[dict[str, str]]) -> Result:
    """``invoicesync sync`` whose first listing of the inbox is followed by ``swaps``."""
    config = write_config(tmp_path / "invoicesync.yaml", CONFIG)
    spec = tmp_path / "swaps.json"
    spec.write_text(json.dumps({"folder": str(tmp_path / "inbox"), "swaps": swaps}))
    argv = [sys.executable, str(FIXTURES / "walk_swap.py"), str(spec), "--"]
    argv += ["--config", str(config), "--log-format", "json", "sync"]
    env = {**os.environ, "INVOICESYNC_PLUGINS": ""}
    # The timeout only guards against the hang a FIFO used to cause.
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def inbox_with(tmp_path: Path, *names: str) -> Path:
    inbox = tmp_path / "inbox"
    for name in names:
        path = inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"%PDF-1.4 {name}\n".encode())
    return inbox


def outside_tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "tree").mkdir(parents=True)
    (outside / "credentials").write_bytes(SECRET)
    (outside / "tree" / "leak.pdf").write_bytes(SECRET)
    return outside


def stored_bytes(tmp_path: Path) -> list[bytes]:
    """Every file the run wrote: exports and the catalog's blobs."""
    found = []
    for folder in (tmp_path / "out", tmp_path / "state"):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                found.append(path.read_bytes())
    return found


def exported(tmp_path: Path) -> set[str]:
    out = tmp_path / "out"
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def failures(result: Result) -> dict[str, str]:
    return {e["document"]: e["reason"] for e in result.events("document.failed")}


def test_file_swapped_for_a_symlink_to_a_secret_is_not_imported(tmp_path: Path) -> None:
    outside = outside_tree(tmp_path)
    inbox_with(tmp_path, "a.pdf", "creds.pdf", "z.pdf")
    result = sync_with_swaps(
        tmp_path,
        [{"name": "creds.pdf", "into": "symlink", "target": str(outside / "credentials")}],
    )
    assert not any(SECRET in data for data in stored_bytes(tmp_path)), result.stderr
    assert exported(tmp_path) == {"a.pdf", "z.pdf"}  # the run went on
    reason = failures(result)["inbox/creds.pdf"]
    assert "symbolic link points outside the folder" in reason and "not followed" in reason
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_folder_swapped_for_a_symlink_to_an_outside_tree_is_not_entered(tmp_path: Path) -> None:
    outside = outside_tree(tmp_path)
    inbox_with(tmp_path, "a.pdf", "sub/inner.pdf", "z.pdf")
    result = sync_with_swaps(
        tmp_path, [{"name": "sub", "into": "symlink", "target": str(outside / "tree")}]
    )
    assert not any(SECRET in data for data in stored_bytes(tmp_path)), result.stderr
    assert exported(tmp_path) == {"a.pdf", "z.pdf"}
    assert "symbolic link points outside the folder" in failures(result)["inbox/sub"]
    assert result.returncode == 1, result.stderr


def test_file_swapped_for_a_fifo_is_skipped_without_hanging(tmp_path: Path) -> None:
    inbox_with(tmp_path, "a.pdf", "pipe.pdf", "z.pdf")
    result = sync_with_swaps(tmp_path, [{"name": "pipe.pdf", "into": "fifo"}])
    assert exported(tmp_path) == {"a.pdf", "z.pdf"}
    assert "is a FIFO now, not a regular file; not read" in failures(result)["inbox/pipe.pdf"]
    assert result.returncode == 1, result.stderr


def test_sidecar_swapped_for_a_fifo_or_outside_link_fails_only_its_document(
    tmp_path: Path,
) -> None:
    outside = outside_tree(tmp_path)
    inbox = inbox_with(tmp_path, "a.pdf", "b.pdf", "c.pdf")
    for stem in "abc":
        (inbox / f"{stem}.json").write_text('{"number": "N-1"}')
    (outside / "meta.json").write_text('{"number": "SECRET-NUMBER"}')
    result = sync_with_swaps(
        tmp_path,
        [
            {"name": "a.json", "into": "fifo"},
            {"name": "b.json", "into": "symlink", "target": str(outside / "meta.json")},
        ],
    )
    reasons = failures(result)
    assert "sidecar a.json: is a FIFO now" in reasons["inbox/a.pdf"]
    assert "sidecar b.json: symbolic link points outside" in reasons["inbox/b.pdf"]
    assert exported(tmp_path) == {"c.pdf"}
    assert "SECRET-NUMBER" not in result.stdout + result.stderr
    assert result.returncode == 1, result.stderr
