"""Start-up of the command line: two installations side by side, interleaved (issue 13).

Usage::

    .venv/bin/python bench/startup.py [--repeat 15] [--config CONFIG.yaml]
                                      [--against OTHER-VENV/bin/invoicesync]

Runs ``invoicesync --version``, ``--help``, ``sync --help`` and, with
``--config``, the no-op ``sync --no-fetch`` on that configuration (its state
must already hold the corpus: e.g. ``bench/compare.py --keep``'s folder), each
``--repeat`` times, and prints the median wall time and CPU time (user +
system, of the child: steadier than wall on a loaded machine) of each.

``--against`` names a second ``invoicesync`` executable (another venv, e.g. one
with the previous release installed); its runs alternate with this one's, so
both see the same load, and the ratio this / other is printed. The load
average is printed before and after. Also prints how many modules
``--version`` and the no-op sync import (``-X importtime`` lines).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; exits on failure."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = os.times()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def modules_imported(exe: str, args: list[str]) -> int:
    python = str(Path(exe).with_name("python"))
    proc = subprocess.run(
        [python, "-X", "importtime", "-m", "invoicesync.daemon.cli", *args],
        capture_output=True,
        text=True,
    )
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("import time:")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command (15)")
    parser.add_argument("--config", type=Path, help="configuration for the no-op sync --no-fetch")
    parser.add_argument("--against", help="another invoicesync executable, run interleaved")
    args = parser.parse_args()
    this = str(Path(sys.executable).with_name("invoicesync"))
    exes = {"this": this}
    if args.against:
        exes["other"] = args.against
    jobs: list[tuple[str, list[str]]] = [
        ("--version", ["--version"]),
        ("--help", ["--help"]),
        ("sync --help", ["sync", "--help"]),
    ]
    if args.config:
        jobs.append(
            (
                "sync --no-fetch (no-op)",
                ["--config", str(args.config), "--log-level", "warning", "sync", "--no-fetch"],
            )
        )
    print(f"# load before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for name, argv in jobs:
        for exe in exes.values():
            run([exe, *argv])  # warm the page cache
        for _ in range(args.repeat):
            for label, exe in exes.items():
                results.setdefault((name, label), []).append(run([exe, *argv]))
    print(f"# load after (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    head = "| command | " + " | ".join(f"{label} wall / CPU" for label in exes)
    print("\n" + head + (" | CPU ratio this/other |" if args.against else " |"))
    print("|---|" + "---:|" * (len(exes) + (1 if args.against else 0)))
    for name, _argv in jobs:
        cells = []
        cpus = {}
        for label in exes:
            walls = [w for w, _ in results[(name, label)]]
            cpu = statistics.median(c for _, c in results[(name, label)])
            cpus[label] = cpu
            cells.append(f"{statistics.median(walls):.3f} s / {cpu:.3f} s")
        ratio = f" {cpus['this'] / cpus['other']:.2f} |" if args.against else ""
        print(f"| `{name}` | " + " | ".join(cells) + " |" + ratio)
    print()
    for label, exe in exes.items():
        counts = [f"--version {modules_imported(exe, ['--version'])}"]
        if args.config:
            noop = ["--config", str(args.config), "--log-level", "warning", "sync", "--no-fetch"]
            counts.append(f"no-op sync {modules_imported(exe, noop)}")
        print(f"# modules imported ({label}): {', '.join(counts)}")


if __name__ == "__main__":
    main()
