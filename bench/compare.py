"""Bulk sync side by side with rclone and rsync (issue 13; docs/performance.md, "Bulk").

Usage::

    .venv/bin/python bench/compare.py [--count 100000] [--folders 50] [--repeat 5] [--transfers 8]
                                      [--workdir DIR] [--profile DIR] [--keep]

Generates the issue's corpus -- ``--count`` unique PDF-like files of 10-20 KB
spread over ``--folders`` sub-folders -- in a temporary folder, then in ONE run,
on that same corpus, measures under ``/usr/bin/time -v`` (wall time and peak
resident memory of each command, and its CPU time, user + system):

* first copy: ``rclone copy --transfers 8`` (local -> local), ``rsync -a`` and
  ``invoicesync sync`` (a ``folder`` source -> a ``folder`` export account with
  ``filename: "{filename}.{ext}"``, fresh SQLite state: import + export);
* full no-op re-sync: ``invoicesync sync`` against ``rsync -a`` once more;
* export-only no-op: ``invoicesync sync --no-fetch`` against ``rclone copy``
  once more;
* ``invoicesync --version`` and ``--help`` (median of ``--repeat`` runs).

It prints a markdown table with the ratio invoicesync / peer for each job. The
copies are not equivalent in durability: invoicesync fsyncs every blob and
every exported file (power-loss safety is its default); rclone and rsync do
not fsync at all, so their figures only count writes into the page cache. The
table says so beside the first-sync figure. All commands read the corpus from
a warm page cache (it was just written).

``--profile DIR`` afterwards runs the first sync once more on a fresh state,
split into its two phases (``fetch`` = import, ``sync --no-fetch`` = export),
each under ``python -m cProfile -o DIR/<phase>.prof``, and prints for each the
top 10 of the product's own functions by cumulative time and the top 10
functions by own (tottime) time (profiled timings are inflated; the table
above is measured without the profiler).

The machine's load (``os.getloadavg``) is printed before and after: other
processes on a shared machine inflate wall times. The temporary folder is
removed at the end unless ``--keep``. Needs ``/usr/bin/time`` (Debian package
``time``), ``rclone`` and ``rsync`` on PATH, and invoicesync installed in the
environment of the Python that runs this script (``sys.executable``'s folder).
"""

from __future__ import annotations

import argparse
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# bench/ is sys.path[0] when this script runs: share the /usr/bin/time parser
# and the fsync probe with the sync bench rather than copying them.
from sync import fsync_latency_ms, parse_time_v


@dataclass
class Measure:
    """One command's wall time (s), peak RSS (KiB) and exit code."""

    wall_s: float
    cpu_s: float
    rss_kib: int
    code: int
    err: str = ""

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


def fake_pdf(index: int, rng: random.Random) -> bytes:
    """10-20 KB that start and end like a PDF and are unique per index."""
    head = f"%PDF-1.4\n% invoicesync compare document {index}\n".encode()
    size = rng.randint(10 * 1024, 20 * 1024)
    return head + rng.randbytes(size - len(head) - 6) + b"\n%%EOF"


def generate(root: Path, count: int, folders: int, seed: int = 13) -> int:
    """Write ``count`` documents round-robin into ``folders`` sub-folders; return bytes."""
    rng = random.Random(seed)
    dirs = [root / f"folder-{i:02d}" for i in range(folders)]
    for folder in dirs:
        folder.mkdir(parents=True)
    total = 0
    for index in range(count):
        data = fake_pdf(index, rng)
        # Names are unique across folders, so the flat "{filename}.{ext}" target
        # of invoicesync gets one file per document.
        (dirs[index % folders] / f"invoice-{index:07d}.pdf").write_bytes(data)
        total += len(data)
    return total


def write_config(work: Path) -> Path:
    config = work / "invoicesync.yaml"
    config.write_text(
        "version: 1\n"
        "timezone: Europe/Berlin\n"
        "state: ./state\n"
        "log: {format: json, level: warning}\n"
        "companies:\n"
        "  - {id: acme, name: Acme}\n"
        "sources:\n"
        "  - id: inbox\n"
        "    type: folder\n"
        "    schedule: {every: 1h}\n"
        f"    options: {{path: {work / 'corpus'}, company: acme}}\n"
        "exports:\n"
        "  - id: archive\n"
        "    type: folder\n"
        "    schedule: {every: 1h}\n"
        '    filename: "{filename}.{ext}"\n'
        f"    options: {{path: {work / 'out-invoicesync'}}}\n"
    )
    return config


def timed(cmd: list[str]) -> Measure:
    """Run ``cmd`` under ``/usr/bin/time -v``; its wall time and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    wall, cpu, rss = parse_time_v(proc.stderr)
    return Measure(wall or elapsed, cpu, rss, proc.returncode, proc.stderr[-2000:])


def median_of(cmd: list[str], repeat: int) -> Measure:
    runs = [timed(cmd) for _ in range(repeat)]
    return Measure(
        statistics.median(r.wall_s for r in runs),
        statistics.median(r.cpu_s for r in runs),
        max(r.rss_kib for r in runs),
        max(r.code for r in runs),
        runs[-1].err,
    )


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def ratio(ours: Measure, peer: Measure) -> str:
    return f"{ours.wall_s / peer.wall_s:.1f}×" if peer.wall_s > 0 else "n/a"


def profile_phases(invoicesync: Path, work: Path, out: Path, limit: int = 10) -> None:
    """Run import then export once each under cProfile on a fresh state; print the tops."""
    shutil.rmtree(work / "state", ignore_errors=True)
    shutil.rmtree(work / "out-invoicesync", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    base = [str(invoicesync), "--config", str(work / "invoicesync.yaml")]
    for name, args in (("import", ["fetch"]), ("export", ["sync", "--no-fetch"])):
        prof = out / f"{name}.prof"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", str(prof), *base, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        print(
            f"\n# profile of {name} ({' '.join(args)}): {elapsed:.1f} s under cProfile, "
            f"exit {proc.returncode}; {prof}",
            flush=True,
        )
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
        if prof.exists():
            stats = pstats.Stats(str(prof))
            # The first cumulative entries are always the CLI's click wrappers:
            # show the product's own functions, then the costliest leaves.
            stats.sort_stats("cumulative").print_stats(
                r"(daemon|plugins|connectors_builtin)/", limit
            )
            stats.sort_stats("tottime").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (or docs/performance.md, 'Bulk') for what is measured.",
    )
    parser.add_argument(
        "--count", type=int, default=100_000, help="documents in the corpus (default 100000)"
    )
    parser.add_argument(
        "--folders", type=int, default=50, help="sub-folders they are spread over (default 50)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="runs of --version and --help each; the median is shown (default 5)",
    )
    parser.add_argument("--transfers", type=int, default=8, help="rclone's --transfers (default 8)")
    parser.add_argument(
        "--workdir", type=Path, help="parent of the temporary folder (default: the system's)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="afterwards profile import and export once each into DIR/<phase>.prof",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (corpus, outputs, state)"
    )
    args = parser.parse_args(argv)

    for tool in ("rclone", "rsync"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH (Debian package {tool})")
    if not Path("/usr/bin/time").exists():
        parser.error("/usr/bin/time is missing: apt-get install time")
    invoicesync = Path(sys.executable).with_name("invoicesync")
    if not invoicesync.exists():
        parser.error(f"{invoicesync} not found: run this with the venv's python")

    work = Path(tempfile.mkdtemp(prefix="invoicesync-bench-compare-", dir=args.workdir))
    try:
        corpus = work / "corpus"
        print(f"# load before (1, 5, 15 min): {load()}; {os.cpu_count()} CPUs", flush=True)
        file_ms, dir_ms = fsync_latency_ms(work)
        print(
            f"# work folder {work}; new-file write+fsync {file_ms:.2f} ms, "
            f"folder fsync {dir_ms:.2f} ms (medians)",
            flush=True,
        )
        start = time.perf_counter()
        size = generate(corpus, args.count, args.folders)
        print(
            f"# generated {args.count:,} files, {size / 1e6:,.0f} MB in {args.folders} "
            f"folders in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        config = write_config(work)
        base = [str(invoicesync), "--config", str(config), "--log-level", "warning"]
        rclone = [
            "rclone",
            "copy",
            "--transfers",
            str(args.transfers),
            str(corpus),
            str(work / "out-rclone"),
        ]
        rsync = ["rsync", "-a", f"{corpus}/", f"{work / 'out-rsync'}/"]

        steps: list[tuple[str, list[str]]] = [
            ("rclone first", rclone),
            ("rsync first", rsync),
            ("invoicesync first", [*base, "sync"]),
            ("rsync no-op", rsync),
            ("invoicesync no-op", [*base, "sync"]),
            ("rclone no-op", rclone),
            ("invoicesync export-only no-op", [*base, "sync", "--no-fetch"]),
        ]
        m: dict[str, Measure] = {}
        failed = False
        for name, cmd in steps:
            m[name] = timed(cmd)
            print(
                f"# {name}: {m[name].wall_s:.2f} s, CPU {m[name].cpu_s:.2f} s, "
                f"{m[name].rss_mib:.0f} MiB, exit {m[name].code}",
                flush=True,
            )
            if m[name].code != 0:
                failed = True
                print(m[name].err, file=sys.stderr)
        m["version"] = median_of([str(invoicesync), "--version"], args.repeat)
        m["help"] = median_of([str(invoicesync), "--help"], args.repeat)
        for out in ("out-rclone", "out-rsync", "out-invoicesync"):
            got = count_files(work / out)
            if got != args.count:
                failed = True
                print(f"# {out} holds {got:,} files, expected {args.count:,}", file=sys.stderr)
        print(f"# load after (1, 5, 15 min): {load()}", flush=True)

        def s(key: str) -> str:
            # CPU (user + system) is the steadier figure on a shared machine.
            return f"{m[key].wall_s:.2f} s (CPU {m[key].cpu_s:.2f})"

        peak = max(m[k].rss_mib for k in m if k.startswith("invoicesync"))
        print(f"\nN = {args.count:,} documents, {size / 1e6:,.0f} MB, {args.folders} folders\n")
        print("| job | invoicesync | peer | ratio |")
        print("|---|---:|---|---:|")
        print(
            f"| first sync (import + export; invoicesync fsyncs every document, "
            f"rclone and rsync do not) | {s('invoicesync first')} | "
            f"`rclone copy --transfers {args.transfers}` {s('rclone first')}; "
            f"`rsync -a` {s('rsync first')} | "
            f"{ratio(m['invoicesync first'], m['rclone first'])} rclone, "
            f"{ratio(m['invoicesync first'], m['rsync first'])} rsync |"
        )
        print(
            f"| full re-sync, nothing changed | {s('invoicesync no-op')} | "
            f"`rsync -a` no-op {s('rsync no-op')} | "
            f"{ratio(m['invoicesync no-op'], m['rsync no-op'])} |"
        )
        print(
            f"| export-only re-sync (`sync --no-fetch`) | "
            f"{s('invoicesync export-only no-op')} | `rclone copy` no-op {s('rclone no-op')} | "
            f"{ratio(m['invoicesync export-only no-op'], m['rclone no-op'])} |"
        )
        print(f"| `invoicesync --version` (median of {args.repeat}) | {s('version')} | — | — |")
        print(f"| `invoicesync --help` (median of {args.repeat}) | {s('help')} | — | — |")
        print(
            f"| peak RSS | {peak:.0f} MiB (first {m['invoicesync first'].rss_mib:.0f}, "
            f"no-op {m['invoicesync no-op'].rss_mib:.0f}, export-only "
            f"{m['invoicesync export-only no-op'].rss_mib:.0f}) | "
            f"rclone {max(m['rclone first'].rss_mib, m['rclone no-op'].rss_mib):.0f} MiB; "
            f"rsync {max(m['rsync first'].rss_mib, m['rsync no-op'].rss_mib):.0f} MiB | "
            f"{peak / max(m['rclone first'].rss_mib, m['rclone no-op'].rss_mib):.1f}× rclone |"
        )
        sys.stdout.flush()
        if args.profile is not None:
            profile_phases(invoicesync, work, args.profile)
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
