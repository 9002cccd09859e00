"""No-op re-syncs and peak memory as the catalog grows (issue 13; docs/performance.md, "Bulk").

Usage::

    .venv/bin/python bench/memory.py [--counts 10000,100000] [--size 100] [--folders 50]
                                     [--invoicesync LABEL=PATH ...] [--profile DIR]
                                     [--workdir DIR] [--keep]

For each N in ``--counts`` it writes N *tiny* unique files (``--size`` bytes,
default 100, PDF-like) into ``--folders`` sub-folders -- small so that a
million documents fit on disk and in the time a first sync takes -- and then,
for each invoicesync installation given (default: the one beside this
Python), on a fresh SQLite state, measures under ``/usr/bin/time -v`` (wall,
CPU = user + system, peak RSS):

* the first ``sync`` (import + export to a ``folder`` account, as in
  ``bench/compare.py``; invoicesync fsyncs every document);
* the full no-op ``sync`` (nothing changed), against ``rsync -a`` no-op on the
  same corpus in the same run;
* the export-only no-op ``sync --no-fetch``.

Several ``--invoicesync LABEL=PATH`` (e.g. ``before=/work/main/.venv/bin/invoicesync``)
compare installations on the same corpus in one run. What to look at: peak
RSS per phase across N (flat or growing), and the no-op ratios to rsync.
``--profile DIR`` runs the no-op ``sync`` of the last installation once more
under cProfile at each N (``DIR/noop-N.prof``) and prints its top functions.

``--synthetic`` (for N too large to import in the time at hand, e.g. 1,000,000)
skips the first sync: each installation imports and exports ONE file of the
corpus for real (a template), then the state is filled directly with one
catalog row, one revision and one ``exported`` ledger row per file, copied
from the template's with the file's own name, size and fingerprint (in the
template's fingerprint format, found by reproducing it from the file's stat)
and a stand-in SHA-256 (no blob is written: a no-op reads none). The no-op
``sync`` and ``sync --no-fetch`` then run on a state of N documents exactly
as after a first sync; the first-sync column shows the template run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pstats
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ is sys.path[0]: share the runner and the configuration with compare.py.
from compare import Measure, load, timed, write_config


def generate_tiny(root: Path, count: int, folders: int, size: int, seed: int = 13) -> None:
    """``count`` unique files of ``size`` bytes, round-robin over ``folders`` sub-folders."""
    rng = random.Random(seed)
    dirs = [root / f"folder-{i:02d}" for i in range(folders)]
    for folder in dirs:
        folder.mkdir(parents=True)
    for index in range(count):
        head = f"%PDF-1.4\n% tiny {index}\n".encode()
        body = rng.randbytes(max(size - len(head) - 6, 0))
        (dirs[index % folders] / f"invoice-{index:07d}.pdf").write_bytes(head + body + b"\n%%EOF")


def _formats(st: os.stat_result) -> list[str]:
    """The folder source's fingerprint formats without sidecar: before and after issue 13."""
    return [
        f"{st.st_size}:{st.st_mtime_ns}",
        f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}",
    ]


def synthesize(work: Path, exe: Path) -> Measure:
    """Import + export one file for real, then fill the state with every other file (see docs)."""
    corpus = work / "corpus"
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    hidden = work / "held-back"
    shutil.rmtree(hidden, ignore_errors=True)
    # The template run sees one file: move the others aside (a rename per folder).
    hidden.mkdir()
    template = files[0]
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        folder.rename(hidden / folder.name)
    (corpus / template.parent.name).mkdir()
    (hidden / template.parent.name / template.name).rename(template)
    config = work / "invoicesync.yaml"
    first = timed([str(exe), "--config", str(config), "--log-level", "warning", "sync"])
    imported_stat = template.stat()  # moving it back changes its ctime
    template.rename(hidden / template.parent.name / template.name)
    (corpus / template.parent.name).rmdir()
    for folder in sorted(hidden.iterdir()):
        folder.rename(corpus / folder.name)
    hidden.rmdir()

    db = sqlite3.connect(work / "state" / "catalog.sqlite3")
    db.row_factory = sqlite3.Row
    doc = dict(db.execute("SELECT * FROM documents").fetchone())
    rev = dict(db.execute("SELECT * FROM document_revisions").fetchone())
    led = dict(db.execute("SELECT * FROM ledger").fetchone())
    style = next(i for i, f in enumerate(_formats(imported_stat)) if f == doc["fingerprint"])
    docs, revs, leds = [], [], []
    for path in files:
        rel = path.relative_to(corpus).as_posix()
        st = path.stat()
        # The template keeps its real hash (its content is in the blob store).
        sha = doc["sha256"] if path == template else hashlib.sha256(rel.encode()).hexdigest()
        doc_id = f"{doc['source']}/{rel}"
        docs.append(
            {
                **doc,
                "id": doc_id,
                "external_id": rel,
                "filename": path.name,
                "size": st.st_size,
                "sha256": sha,
                "fingerprint": _formats(st)[style],
            }
        )
        revs.append(
            {**rev, "document_id": doc_id, "sha256": sha, "size": st.st_size, "filename": path.name}
        )
        leds.append(
            {
                **led,
                "document_id": doc_id,
                "sha256": sha,
                "exported_sha256": sha,
                "remote_name": path.name,
            }
        )
    with db:
        db.execute("DELETE FROM ledger")
        db.execute("DELETE FROM document_revisions")
        db.execute("DELETE FROM documents")
        for table, rows in (("documents", docs), ("document_revisions", revs), ("ledger", leds)):
            cols = list(rows[0])
            db.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) "
                f"VALUES ({', '.join(':' + c for c in cols)})",
                rows,
            )
    db.close()
    return first


def cell(m: Measure) -> str:
    return f"{m.wall_s:.2f} s / {m.cpu_s:.2f} s / {m.rss_mib:.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring for what is measured.",
    )
    parser.add_argument(
        "--counts",
        default="10000,100000",
        help="comma-separated corpus sizes (default 10000,100000)",
    )
    parser.add_argument("--size", type=int, default=100, help="bytes per file (default 100)")
    parser.add_argument("--folders", type=int, default=50, help="sub-folders (default 50)")
    parser.add_argument(
        "--invoicesync",
        action="append",
        metavar="LABEL=PATH",
        help="an invoicesync executable to measure (repeatable; default: this venv's)",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="fill the state directly instead of a first sync (see the docs)",
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile the no-op sync")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    installs: list[tuple[str, Path]] = []
    for spec in args.invoicesync or [f"this={Path(sys.executable).with_name('invoicesync')}"]:
        label, _, path = spec.partition("=")
        if not path or not Path(path).exists():
            parser.error(f"--invoicesync {spec}: expected LABEL=PATH of an existing executable")
        installs.append((label, Path(path)))
    if shutil.which("rsync") is None or not Path("/usr/bin/time").exists():
        parser.error("needs rsync and /usr/bin/time on this machine")

    work = Path(tempfile.mkdtemp(prefix="invoicesync-bench-memory-", dir=args.workdir))
    rows: list[str] = []
    failed = False
    try:
        print(f"# load before (1, 5, 15 min): {load()}; {os.cpu_count()} CPUs", flush=True)
        for count in (int(c) for c in args.counts.split(",")):
            shutil.rmtree(work / "corpus", ignore_errors=True)
            start = time.perf_counter()
            generate_tiny(work / "corpus", count, args.folders, args.size)
            print(f"# N={count:,}: generated in {time.perf_counter() - start:.1f} s", flush=True)
            config = write_config(work)
            rsync = ["rsync", "-a", f"{work / 'corpus'}/", f"{work / 'out-rsync'}/"]
            shutil.rmtree(work / "out-rsync", ignore_errors=True)
            timed(rsync)
            rsync_noop = timed(rsync)
            for label, exe in installs:
                shutil.rmtree(work / "state", ignore_errors=True)
                shutil.rmtree(work / "out-invoicesync", ignore_errors=True)
                base = [str(exe), "--config", str(config), "--log-level", "warning"]
                m = {
                    "first": synthesize(work, exe) if args.synthetic else timed([*base, "sync"]),
                    "noop": timed([*base, "sync"]),
                    "export-only": timed([*base, "sync", "--no-fetch"]),
                }
                for name, measure in m.items():
                    print(f"# N={count:,} {label} {name}: {cell(measure)}, exit {measure.code}")
                    if measure.code != 0:
                        failed = True
                        print(measure.err, file=sys.stderr)
                ratio = m["noop"].wall_s / rsync_noop.wall_s if rsync_noop.wall_s else 0.0
                rows.append(
                    f"| {count:,} | {label} | {cell(m['first'])} | {cell(m['noop'])} | "
                    f"{cell(m['export-only'])} | {cell(rsync_noop)} | {ratio:.1f}× |"
                )
                sys.stdout.flush()
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                prof = args.profile / f"noop-{count}.prof"
                label, exe = installs[-1]
                subprocess.run(
                    [
                        # That installation's own Python (its code, not this one's).
                        str(exe.with_name("python")),
                        "-m",
                        "cProfile",
                        "-o",
                        str(prof),
                        str(exe),
                        "--config",
                        str(config),
                        "--log-level",
                        "warning",
                        "sync",
                    ],
                    capture_output=True,
                    check=False,
                )
                print(f"\n# cProfile of {label}'s no-op sync at N={count:,}: {prof}")
                stats = pstats.Stats(str(prof))
                stats.sort_stats("cumulative").print_stats(
                    r"(daemon|plugins|connectors_builtin)/", 15
                )
                stats.sort_stats("tottime").print_stats(12)
        print(f"# load after (1, 5, 15 min): {load()}")
        print("\nwall / CPU (user + system) / peak RSS\n")
        print(
            "| N | invoicesync | first sync | no-op sync | export-only no-op "
            "| `rsync -a` no-op | no-op ratio |"
        )
        print("|---:|---|---|---|---|---|---:|")
        print("\n".join(rows))
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
