"""Benchmark of e-invoice extraction (docs/performance.md, "E-invoice extraction").

Usage::

    python bench/einvoice.py [--repeat 200] [--count 2000] [--rounds 3] [--workdir DIR]

1. **Extractor cost per document**, in process: the built-in extractor's
   ``detect`` + ``extract`` (including the XSD validation) on a Factur-X PDF,
   a CII XML, a UBL XML, a plain PDF without attachment and a small generated
   PDF-like file (the common case), each ``--repeat`` times; the median per
   document. Schemas are compiled once before timing (that one-off cost, per
   schema and process, is printed too).
2. **Import throughput, extraction on vs off**, through the command line:
   ``invoicesync fetch`` of ``--count`` small generated PDF-like files (1-2 KB,
   no e-invoice: the common case, and the one that must not get slower) into
   a fresh state, with the source's default ``extract: [einvoice]`` and with
   ``extract: []``, alternating, ``--rounds`` times each, under
   ``/usr/bin/time -v``; the medians of wall and CPU time (user + system),
   and the best CPU time (the run least disturbed by other processes).

Run it with the venv's Python: ``.venv/bin/python bench/einvoice.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "einvoices"


def per_document(repeat: int, workdir: Path) -> None:
    from invoicesync.connectors_builtin.einvoice import EInvoiceExtractor
    from invoicesync.connectors_builtin.einvoice.validation import _schema
    from invoicesync.plugins import ExtractionInput

    for flavor in ("en16931", "ubl-2.1-invoice"):
        started = time.perf_counter()
        _schema(flavor)
        print(f"compile XSD {flavor}: {(time.perf_counter() - started) * 1000:.0f} ms (once)")
    small = workdir / "small.pdf"
    small.write_bytes(b"%PDF-1.4\n" + os.urandom(1500) + b"\n%%EOF\n")
    cases = [
        ("Factur-X PDF (300 KB, embedded XML)", DATA / "facturx-pkg_invoice_EN16931.pdf"),
        ("CII XML (Factur-X EN 16931, 65 KB)", DATA / "facturx-pkg_factur-x-en16931.xml"),
        ("UBL XML (XRechnung, 4 KB)", DATA / "django-xrechnung_ubl.xml"),
        ("plain PDF, no attachment (0.4 KB)", DATA / "django-xrechnung_no-xml.pdf"),
        ("plain PDF-like file (1.5 KB)", small),
    ]
    extractor = EInvoiceExtractor()
    print("\n| document | detect (µs) | detect + extract (µs) |")
    print("|---|---:|---:|")
    for label, path in cases:
        document = ExtractionInput(path.name, None, path)
        detect, full = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            found = extractor.detect(document)
            t1 = time.perf_counter()
            if found:
                extractor.extract(document)
            t2 = time.perf_counter()
            detect.append(t1 - t0)
            full.append(t2 - t0)
        print(
            f"| {label} | {statistics.median(detect) * 1e6:,.0f} "
            f"| {statistics.median(full) * 1e6:,.0f} |"
        )


CONFIG = """version: 1
timezone: UTC
state: ./state
log: {{level: warning}}
sources:
  - {{id: inbox, type: folder, options: {{path: ./inbox}}{extract}}}
"""


def fetch_once(workdir: Path, extract: bool) -> tuple[float, float]:
    shutil.rmtree(workdir / "state", ignore_errors=True)
    config = workdir / "invoicesync.yaml"
    config.write_text(CONFIG.format(extract="" if extract else ", extract: []"))
    cli = Path(sys.executable).parent / "invoicesync"
    argv = ["/usr/bin/time", "-v", str(cli), "--config", str(config), "fetch"]
    env = {**os.environ, "INVOICESYNC_PLUGINS": ""}
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    cpu = 0.0
    for line in proc.stderr.splitlines():
        line = line.strip()
        if line.startswith(("User time (seconds):", "System time (seconds):")):
            cpu += float(line.rsplit(":", 1)[1])
    return wall, cpu


def throughput(count: int, rounds: int, workdir: Path) -> None:
    inbox = workdir / "inbox"
    rng = random.Random(11)
    for i in range(count):
        folder = inbox / f"{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        body = rng.randbytes(rng.randint(1000, 2000))
        (folder / f"doc{i:06d}.pdf").write_bytes(b"%PDF-1.4\n" + body + b"\n%%EOF\n")
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(rounds):
        for extract in (False, True):
            results[extract].append(fetch_once(workdir, extract))
    print(
        f"\n| import of {count:,} plain PDFs | wall (s), median | docs/s | CPU (s), median "
        "| CPU (s), best |"
    )
    print("|---|---:|---:|---:|---:|")
    for extract in (False, True):
        wall = statistics.median(r[0] for r in results[extract])
        cpu = statistics.median(r[1] for r in results[extract])
        best = min(r[1] for r in results[extract])
        label = "extraction on (default)" if extract else "extraction off (`extract: []`)"
        print(f"| {label} | {wall:.2f} | {count / wall:,.0f} | {cpu:.2f} | {best:.2f} |")
    print("raw (wall, cpu):", {k: v for k, v in results.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="einvoice-bench-", dir=args.workdir))
    try:
        per_document(args.repeat, workdir)
        throughput(args.count, args.rounds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
