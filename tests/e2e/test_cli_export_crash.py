"""kill -9 at the export's batch boundaries (group commit), then sync again.

The export writes a batch of documents, makes them durable with one barrier,
then records them in one ledger transaction. The kills here land inside a
batch (files renamed into place, none recorded, a temporary file half
written) and between a batch's barrier and its commit. In each case the
next run must converge: every document exactly once under the name it had
reserved, no second copy under another name, the ledger all ``exported``,
no temporary file left.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from fixtures.cli import run_cli, write_config

CRASH_PLUGIN = Path(__file__).parents[1] / "fixtures" / "crash_target.py"
COUNT = 600  # more than two batches of 256
TEMP = ".invoicesync-tmp-"


def install_crash_plugin(site: Path) -> Path:
    """Install ``fixtures/crash_target.py`` as a real entry-point plugin."""
    site.mkdir(parents=True)
    shutil.copy(CRASH_PLUGIN, site / "invoicesync_crash_target.py")
    dist = site / "invoicesync_crash_target-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: invoicesync-crash-target\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text("[invoicesync]\ncrash-test = invoicesync_crash_target\n")
    return site


def ledger_rows(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """document id -> (state, remote name) of the account ``archive``."""
    db = sqlite3.connect(tmp_path / "state" / "catalog.sqlite3")
    try:
        rows = db.execute(
            "SELECT document_id, state, remote_name FROM ledger WHERE account='archive'"
        ).fetchall()
    finally:
        db.close()
    return {doc: (state, name) for doc, state, name in rows}


def on_disk(out: Path) -> tuple[set[str], list[str]]:
    """The exported files (relative names) and the temporary files below ``out``."""
    files = [p for p in out.rglob("*") if p.is_file()]
    temps = [p.name for p in files if TEMP in p.name]
    return {p.relative_to(out).as_posix() for p in files if TEMP not in p.name}, temps


@pytest.mark.parametrize(
    ("crash_at", "concurrency"),
    [("export:300", 1), ("export:300", 4), ("barrier:2", 1)],
)
def test_kill_9_at_a_batch_boundary_then_sync_again_converges(
    tmp_path: Path, crash_at: str, concurrency: int
) -> None:
    site = install_crash_plugin(tmp_path / "site")
    config = write_config(
        tmp_path / "invoicesync.yaml",
        f"""
version: 1
timezone: Europe/Berlin
state: ./state
companies: [{{id: acme}}, {{id: telekom}}, {{id: officeplus}}, {{id: cloudhost}}, {{id: railways}}]
sources:
  - {{id: demo, type: demo, options: {{count: {COUNT}, seed: 7}}}}
exports:
  - id: archive
    type: crashing-folder
    concurrency: {concurrency}
    options: {{path: ./out}}
""",
    )
    mark = tmp_path / "killed"
    env = {
        "PYTHONPATH": str(site),
        "INVOICESYNC_PLUGINS": "crash-test",
        "INVOICESYNC_TEST_CRASH_MARK": str(mark),
    }
    out = tmp_path / "out"

    first = run_cli("sync", config=config, env={**env, "INVOICESYNC_TEST_CRASH_AT": crash_at})
    assert first.returncode == -9, first.stderr[-2000:]
    assert mark.exists()

    # The moment of the kill: files in place whose outcome was never recorded.
    rows = ledger_rows(tmp_path)
    files, temps = on_disk(out)
    names = {name for _, name in rows.values()}
    assert files <= names, f"files without an intent in the ledger: {sorted(files - names)[:5]}"
    unrecorded = {name for state, name in rows.values() if state == "exporting"} & files
    assert unrecorded, "the kill should leave written but unrecorded documents"
    if crash_at.startswith("export"):
        assert len(files) < COUNT  # the document being written is not in place
        assert temps, "the half-written temporary file should still be there"
    # After a barrier the workers may have been writing the next batch (they
    # run ahead of the commits): files and a temporary of it can be there too.

    again = run_cli("sync", config=config, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    final = ledger_rows(tmp_path)
    files, temps = on_disk(out)
    assert not temps
    assert len(final) == COUNT and {state for state, _ in final.values()} == {"exported"}
    assert files == {name for _, name in final.values()}  # one file per document
    # A document that was written but not recorded kept its name: no twin.
    for doc, (state, name) in rows.items():
        if state in ("exporting", "exported"):
            assert final[doc][1] == name, doc
    # Nothing recorded before the kill was exported again.
    exported_again = {e["document"] for e in again.events("document.exported")}
    assert not exported_again & {d for d, (s, _) in rows.items() if s == "exported"}
    assert len(exported_again) == COUNT - sum(1 for s, _ in rows.values() if s == "exported")
