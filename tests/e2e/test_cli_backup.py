"""`invoicesync backup` during a sync, restored into a fresh state (issue 14 item 9).

The sync is stopped deterministically in the middle, right after its first
export was committed, by the test plugin's pause hook; the backup is taken
then, by another process, through the CLI. The backup, restored into an empty
state folder as docs/operations.md says, converges: the next sync exports only
what the snapshot had not recorded as exported yet, never a duplicate, and a
further sync exports nothing.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from fixtures.daemon_proc import DaemonProcess, run_cli, write_config

COUNT = 12


def _config(tmp: Path, state: str) -> Path:
    return write_config(
        tmp / f"{state}.yaml",
        {
            "version": 1,
            "timezone": "UTC",
            "state": f"./{state}",
            "companies": [
                {"id": c} for c in ("acme", "telekom", "officeplus", "cloudhost", "railways")
            ],
            "sources": [{"id": "demo", "type": "demo", "options": {"count": COUNT, "seed": 3}}],
            "exports": [{"id": "archive", "type": "folder", "options": {"path": "./out"}}],
        },
    )


def _exported(state: Path) -> set[str]:
    db = sqlite3.connect(state / "catalog.sqlite3")
    try:
        rows = db.execute(
            "SELECT document_id FROM ledger WHERE account = 'archive' AND state = 'exported'"
        ).fetchall()
    finally:
        db.close()
    return {r[0] for r in rows}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_backup_taken_during_a_sync_restores_and_converges(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    config = _config(tmp_path, "state")
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {
        **daemon_env,
        "INVOICESYNC_TEST_PAUSE_DIR": str(pause),
        "INVOICESYNC_TEST_PAUSE_ON": "exported",
    }
    sync = DaemonProcess(config, env, ["--log-format", "json", "sync"])
    try:
        marker = pause / f"paused-{sync.proc.pid}"
        sync.wait_for(lambda _events: marker.exists(), what="the pause after the first export")
        # The sync holds its database connection and waits mid-run.
        taken = run_cli(daemon_env, config, "backup", str(tmp_path / "backup"), timeout=60)
        assert taken.returncode == 0, taken.stderr
        assert "backed up" in taken.stdout and "content file(s)" in taken.stdout
        (pause / "go").write_text("")
        assert sync.proc.wait(timeout=120) == 0
    finally:
        sync.kill()
    assert len(_exported(tmp_path / "state")) == COUNT
    out_before = _files(tmp_path / "out")
    assert len([f for f in out_before if f.endswith(".pdf")]) == COUNT

    backup = tmp_path / "backup"
    in_backup = _exported(backup)
    # Taken after the first batch of exports committed (group commit: one or
    # more documents, as many as the run delivered before that commit).
    assert 1 <= len(in_backup) <= COUNT
    assert (backup / "blobs").is_dir() and not (backup / "blobs" / "tmp").exists()
    integrity = sqlite3.connect(backup / "catalog.sqlite3").execute("PRAGMA integrity_check")
    assert integrity.fetchone() == ("ok",)

    # Restore as docs/operations.md says: copy the backup into an empty state folder.
    restored = tmp_path / "restored"
    shutil.copytree(backup, restored)
    config2 = _config(tmp_path, "restored")
    again = run_cli(daemon_env, config2, "--log-format", "json", "sync", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "import demo: 0 new" in again.stdout  # the catalog came back whole
    events = [line for line in again.stderr.splitlines() if '"document.exported"' in line]
    # Only what the snapshot had not recorded is exported (to the same names).
    assert len(events) == COUNT - len(in_backup)
    assert not any(doc in line for doc in in_backup for line in events)
    assert _files(tmp_path / "out") == out_before  # no duplicates
    assert _exported(restored) == _exported(tmp_path / "state")
    settled = run_cli(daemon_env, config2, "sync", timeout=120)
    assert settled.returncode == 0 and "archive: 0 exported" in settled.stdout, settled.stdout


def test_backup_refuses_a_used_folder_and_names_pg_dump_for_postgres(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    config = _config(tmp_path, "state")
    assert run_cli(daemon_env, config, "sync", timeout=120).returncode == 0
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    used = run_cli(daemon_env, config, "backup", str(tmp_path / "used"))
    assert used.returncode == 2
    assert f"error: {tmp_path / 'used'} exists and is not an empty folder; give a new one" in (
        used.stderr
    )
    pg = write_config(
        tmp_path / "pg.yaml",
        {"version": 1, "state": "./pgstate", "database": "postgresql+psycopg://u@127.0.0.1/x"},
    )
    refused = run_cli(daemon_env, pg, "backup", str(tmp_path / "pgbackup"))
    assert refused.returncode == 2
    assert "the catalog is in postgresql, not SQLite: back it up with pg_dump" in refused.stderr
    assert not (tmp_path / "pgbackup").exists()
