"""Benchmark of a whole sync through the command line (docs/performance.md, "Sync").

Usage::

    python bench/sync.py [--count 10000] [--demo] [--single] [--sidecars 0.25]
                         [--workdir DIR] [--keep] [--profile DIR]

Folder mode (the default) generates ``--count`` small unique PDF-like files
(1-2 KB each, 1,000 per sub-folder, a ``<stem>.json`` sidecar beside a
``--sidecars`` share of them) in a temporary folder, writes a configuration
with that folder as a ``folder`` source and another folder as a ``folder``
export account (state in the same temporary folder, SQLite by default), and
runs the installed ``invoicesync`` as a subprocess under ``/usr/bin/time -v``:

1. ``fetch``             -- import every file into the catalog;
2. ``sync --no-fetch``   -- export every document to the target folder;
3. ``sync``              -- a no-op re-sync: walk, fingerprints, nothing to do.

``--single`` replaces steps 1 and 2 by one ``sync`` (what a user runs).
``--demo`` uses the built-in ``demo`` source with ``count: N`` instead of
generated files (the "demo -> folder" figure of the foundation issue).
``--concurrency N`` sets the export account's ``concurrency`` (documents
exported in parallel threads, so their fsyncs overlap).

Each run prints one markdown table row: N, source, phase, wall time (s),
documents per second, CPU time (user + system, s) and peak resident memory
(MiB), all from ``/usr/bin/time -v``. CPU time is the steadier figure on a
shared machine: wall time also counts waiting for the disk and for the CPU.
Before the runs the bench measures the disk's fsync latency in the work
folder (create, write 1.5 KB, fsync, rename, fsync the folder: what the blob
store and the folder target do per document), because with the default
power-loss safety that latency bounds the rate.

``--profile DIR`` runs each phase under cProfile instead (``DIR/<phase>.prof``,
plus the top functions by cumulative time printed); timings are then inflated
and not comparable with the table.

The bench uses ``invoicesync`` from the same environment as the Python that
runs it (``sys.executable``'s folder), so run it with the venv's Python::

    .venv/bin/python bench/sync.py --count 10000

Needs ``/usr/bin/time`` (Debian package ``time``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PER_FOLDER = 1000
COMPANIES = ["acme", "globex", "initech", "umbrella"]
TYPES = ["incoming_invoice", "receipt", "credit_note", "statement"]


@dataclass
class Result:
    count: int
    source: str
    phase: str
    wall_s: float
    cpu_s: float
    max_rss_kib: int
    exit_code: int

    def row(self) -> str:
        rate = self.count / self.wall_s if self.wall_s > 0 else float("inf")
        return (
            f"| {self.count:,} | {self.source} | {self.phase} | {self.wall_s:.1f} | "
            f"{rate:,.0f} | {self.cpu_s:.1f} | {self.max_rss_kib / 1024:.0f} | {self.exit_code} |"
        )


HEADER = (
    "| N | source | phase | wall (s) | docs/s | CPU (s) | peak RSS (MiB) | exit |\n"
    "|---:|---|---|---:|---:|---:|---:|---:|"
)


def fake_pdf(index: int, rng: random.Random) -> bytes:
    """1-2 KB that start like a PDF and are unique per index."""
    body = (
        f"%PDF-1.4\n% invoicesync bench document {index}\n"
        f"1 0 obj << /Type /Catalog >> endobj\n% invoice {index:08d}\n"
    ).encode()
    filler = rng.randbytes(rng.randint(1024, 2048) - len(body) - 6)
    return body + filler + b"\n%%EOF"


def generate_folder(root: Path, count: int, sidecar_share: float, seed: int = 7) -> int:
    """Write ``count`` documents (and sidecars) below ``root``; return the sidecar count."""
    rng = random.Random(seed)
    sidecars = 0
    for index in range(count):
        folder = root / f"batch-{index // PER_FOLDER:04d}"
        if index % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        stem = f"invoice-{index:07d}"
        (folder / f"{stem}.pdf").write_bytes(fake_pdf(index, rng))
        if rng.random() < sidecar_share:
            sidecars += 1
            meta = {
                "number": f"INV-{index:07d}",
                "type": rng.choice(TYPES),
                "document_date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "company": rng.choice(COMPANIES),
                "gross_amount": f"{rng.randint(100, 99999) / 100:.2f}",
                "currency": "EUR",
                "tags": ["bench", rng.choice(["travel", "office", "fuel"])],
            }
            (folder / f"{stem}.json").write_text(json.dumps(meta))
    return sidecars


def write_config(work: Path, demo: int | None, concurrency: int = 1) -> Path:
    if demo is None:
        source = (
            "  - id: inbox\n"
            "    type: folder\n"
            "    schedule: {every: 1h}\n"
            "    options: {path: ./inbox, company: acme}\n"
        )
    else:
        source = (
            "  - id: demo\n"
            "    type: demo\n"
            "    schedule: {every: 1h}\n"
            f"    options: {{count: {demo}}}\n"
        )
    companies = "".join(f"  - {{id: {c}, name: {c.title()}}}\n" for c in COMPANIES)
    config = work / "invoicesync.yaml"
    config.write_text(
        "version: 1\n"
        "timezone: Europe/Berlin\n"
        "state: ./state\n"
        "log: {format: json, level: warning}\n"
        f"companies:\n{companies}"
        f"sources:\n{source}"
        "exports:\n"
        "  - id: archive\n"
        "    type: folder\n"
        "    schedule: {every: 1h}\n"
        # {filename} is unique per generated file; the default template would
        # give the 75 % without sidecars all one name plus _{sha8}.
        '    filename: "{company}/{document_date:%Y}/{filename}.{ext}"\n'
        f"    concurrency: {concurrency}\n"
        "    options: {path: ./export}\n"
    )
    if demo is not None:
        # Demo documents have real numbers and dates: use the default template.
        text = config.read_text().replace(
            '    filename: "{company}/{document_date:%Y}/{filename}.{ext}"\n', ""
        )
        config.write_text(text)
    return config


def fsync_latency_ms(folder: Path, rounds: int = 200) -> tuple[float, float]:
    """Median ms of (file write+fsync, folder fsync) for new small files in ``folder``."""
    probe = folder / "fsync-probe"
    probe.mkdir()
    dir_fd = os.open(probe, os.O_RDONLY | os.O_DIRECTORY)
    file_ms: list[float] = []
    dir_ms: list[float] = []
    data = os.urandom(1536)
    try:
        for i in range(rounds):
            tmp, final = probe / f".tmp{i}", probe / f"f{i}"
            start = time.perf_counter()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, final)
            middle = time.perf_counter()
            os.fsync(dir_fd)
            end = time.perf_counter()
            file_ms.append((middle - start) * 1000)
            dir_ms.append((end - middle) * 1000)
    finally:
        os.close(dir_fd)
        shutil.rmtree(probe)
    return statistics.median(file_ms), statistics.median(dir_ms)


def parse_time_v(stderr: str) -> tuple[float | None, float, int]:
    """(wall seconds, user+system CPU seconds, max RSS KiB) from ``time -v`` output."""
    wall: float | None = None
    cpu = 0.0
    rss = 0
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            value = line.rsplit(": ", 1)[1]
            seconds = 0.0
            for part in value.split(":"):
                seconds = seconds * 60 + float(part)
            wall = seconds
        elif line.startswith(("User time (seconds)", "System time (seconds)")):
            cpu += float(line.rsplit(": ", 1)[1])
        elif line.startswith("Maximum resident set size"):
            rss = int(line.rsplit(": ", 1)[1])
    return wall, cpu, rss


def run_phase(
    invoicesync: Path,
    config: Path,
    args: list[str],
    profile: Path | None,
    name: str,
) -> tuple[float, float, int, int, str]:
    """Run one command; return (wall s, CPU s, max RSS KiB, exit code, stderr tail)."""
    base = ["--config", str(config), "--log-level", "warning", *args]
    if profile is not None:
        out = profile / f"{name}.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(out), str(invoicesync), *base]
    else:
        cmd = ["/usr/bin/time", "-v", str(invoicesync), *base]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    wall, cpu, rss = parse_time_v(proc.stderr) if profile is None else (None, 0.0, 0)
    return wall or elapsed, cpu, rss, proc.returncode, proc.stderr[-3000:]


def print_profile(path: Path, limit: int = 25) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (or docs/performance.md) for what is measured.",
    )
    parser.add_argument("--count", type=int, default=10_000, help="documents (default 10000)")
    parser.add_argument(
        "--demo", action="store_true", help="use the demo source instead of generated files"
    )
    parser.add_argument(
        "--single",
        action="store_true",
        help="one `sync` instead of `fetch` then `sync --no-fetch`",
    )
    parser.add_argument(
        "--sidecars",
        type=float,
        default=0.25,
        help="share of generated files with a JSON sidecar (default 0.25)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="the export account's `concurrency` (documents exported in parallel; default 1)",
    )
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--profile", type=Path, help="profile each phase into this folder")
    parser.add_argument(
        "--no-header", action="store_true", help="print rows only (to append to a table)"
    )
    args = parser.parse_args(argv)

    if args.profile is None and not Path("/usr/bin/time").exists():
        parser.error("/usr/bin/time is missing: apt-get install time")
    invoicesync = Path(sys.executable).with_name("invoicesync")
    if not invoicesync.exists():
        parser.error(f"{invoicesync} not found: run this with the venv's python")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="invoicesync-bench-sync-", dir=args.workdir))
    try:
        file_ms, dir_ms = fsync_latency_ms(work)
        print(
            f"# work folder {work}; {os.cpu_count()} CPUs; "
            f"new-file write+fsync {file_ms:.2f} ms, folder fsync {dir_ms:.2f} ms (medians)",
            flush=True,
        )
        source = "demo" if args.demo else "folder"
        if args.concurrency > 1:
            source += f", concurrency {args.concurrency}"
        if not args.demo:
            start = time.perf_counter()
            sidecars = generate_folder(work / "inbox", args.count, args.sidecars)
            print(
                f"# generated {args.count:,} files ({sidecars:,} with sidecars) "
                f"in {time.perf_counter() - start:.1f} s",
                flush=True,
            )
        config = write_config(work, args.count if args.demo else None, args.concurrency)
        phases: list[tuple[str, list[str]]] = (
            [("sync", ["sync"])]
            if args.single
            else [
                ("import (fetch)", ["fetch"]),
                ("export (sync --no-fetch)", ["sync", "--no-fetch"]),
            ]
        )
        phases.append(("no-op re-sync", ["sync"]))
        if not args.no_header:
            print(HEADER, flush=True)
        failed = False
        for name, command in phases:
            slug = name.split(" ")[0].replace("-", "")
            wall, cpu, rss, code, err = run_phase(invoicesync, config, command, args.profile, slug)
            print(Result(args.count, source, name, wall, cpu, rss, code).row(), flush=True)
            if code != 0:
                failed = True
                print(f"# {name} exited {code}:\n{err}", file=sys.stderr)
            if args.profile is not None:
                print_profile(args.profile / f"{slug}.prof")
        exported = sum(1 for p in (work / "export").rglob("*") if p.is_file())
        print(f"# files in the export folder: {exported:,}", flush=True)
        if exported != args.count:
            print(f"# expected {args.count:,} exported files", file=sys.stderr)
            failed = True
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
