"""kill -9 at the boundaries of an import's group commit, then import again.

The killed process runs the real ``invoicesync fetch`` (a ``folder`` source);
the test holds it at one moment by wrapping one engine function in the child
process, which prints where it stands and sleeps until it is killed:

* inside a batch: the second batch's documents are partly added (their blobs
  written, some still temporaries, none committed);
* between the barrier and the commit: the second batch's blobs are durable
  and in place, its rows not committed.

Each time the next ``fetch`` must converge: every document imported exactly
once, none a duplicate, a blob (with the right content) for every row.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures.cli import run_cli, write_config

COUNT = 250
BATCH = 100

CHILD = textwrap.dedent(
    """
    import sys, time
    from invoicesync.daemon.storage import blobs, catalog
    from invoicesync.daemon.cli import main

    where, config = sys.argv[1], sys.argv[2]
    # Batches end by their size only: the moment of the kill is exact.
    catalog.BATCH_DOCUMENTS = {batch}
    catalog.BATCH_SECONDS = 3600.0
    calls = [0]

    def hold(label):
        print(label, flush=True)
        time.sleep(600)  # killed long before this ends

    if where == "inside":
        add = catalog.ImportBatch.add

        def add_then_hold(self, *args, **kwargs):
            add(self, *args, **kwargs)
            calls[0] += 1
            if calls[0] == {batch} + {batch} // 2:  # half of the second batch
                hold("inside")

        catalog.ImportBatch.add = add_then_hold
    else:
        settle = blobs._LocalBatch.settle

        def settle_then_hold(self):
            failed = settle(self)
            calls[0] += 1
            if calls[0] == 2:  # the second batch's barrier passed
                hold("barrier")
            return failed

        blobs._LocalBatch.settle = settle_then_hold
    sys.argv = ["invoicesync", "--config", config, "--log-format", "json", "fetch"]
    main()
    """
).format(batch=BATCH)


def _corpus(root: Path) -> dict[str, bytes]:
    made = {}
    for index in range(COUNT):
        name = f"f{index % 5}/inv-{index:04d}.pdf"
        content = f"%PDF-1.4\\n% crash test document {index}\\n".encode() + os.urandom(64)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
        made[name] = content
    return made


def _blob_files(blobs: Path) -> list[Path]:
    return [p for p in blobs.glob("??/??/*") if p.is_file()]


def _catalog_rows(state: Path) -> list[tuple[str, str, str | None, int]]:
    db = sqlite3.connect(state / "catalog.sqlite3")
    try:
        return db.execute(
            "SELECT external_id, sha256, duplicate_of, "
            "(SELECT count(*) FROM document_revisions r WHERE r.document_id = d.id) "
            "FROM documents d ORDER BY external_id"
        ).fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("where", ["inside", "barrier"])
def test_kill_9_at_a_batch_boundary_then_fetch_again_converges(tmp_path: Path, where: str) -> None:
    corpus = _corpus(tmp_path / "inbox")
    config = write_config(
        tmp_path / "invoicesync.yaml",
        f"""
version: 1
timezone: Europe/Berlin
state: ./state
sources:
  - {{id: inbox, type: folder, options: {{path: {tmp_path / "inbox"}}}}}
""",
    )
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, where, str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "INVOICESYNC_PLUGINS": ""},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the child holds
        assert line == f"{where}\n", proc.stderr.read() if proc.stderr else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # What the kill left: only the first batch committed; the second one's
    # blobs written (in place, or still temporaries when inside the batch).
    assert len(_catalog_rows(state)) == BATCH
    blobs = _blob_files(state / "blobs")
    temporaries = list((state / "blobs" / "tmp").iterdir())
    if where == "barrier":
        assert len(blobs) == 2 * BATCH and temporaries == []
    else:
        assert len(blobs) + len(temporaries) == BATCH + BATCH // 2

    again = run_cli("fetch", config=config, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    (finished,) = again.events("import.finished")
    counts = finished.get("counts", finished)
    assert counts["new"] == COUNT - BATCH and counts["unchanged"] == BATCH
    assert len(again.events("document.imported")) == COUNT - BATCH

    rows = _catalog_rows(state)
    # Every document exactly once, none a duplicate, one revision each.
    assert [r[0] for r in rows] == sorted(corpus)
    assert all(duplicate_of is None and revisions == 1 for _, _, duplicate_of, revisions in rows)
    for external_id, sha, _, _ in rows:
        assert sha == hashlib.sha256(corpus[external_id]).hexdigest()
        blob = state / "blobs" / sha[:2] / sha[2:4] / sha
        assert blob.read_bytes() == corpus[external_id]
    # The killed batch's blobs were found by their hash, not written twice.
    assert len(_blob_files(state / "blobs")) == COUNT
