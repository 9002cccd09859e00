"""Measure the built-in connectors: demo generation and folder walking.

    python bench/builtin_connectors.py [--count 100000] [--files 100000]

Prints documents per second for the demo source (metadata + PDF bytes +
checkpoint cursor per document) and for a fetch of the folder source over a
tree of small files (one sidecar in ten), cold and warm page cache alike (the
tree is freshly written, so it is warm).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from invoicesync.connectors_builtin.demo import DemoOptions, DemoSource
from invoicesync.connectors_builtin.folder import FolderSource, FolderSourceOptions
from invoicesync.plugins import ConnectorContext, SourceDocument


def bench_demo(count: int) -> None:
    context = ConnectorContext("demo", Path("/nonexistent"), now=lambda: datetime.now(UTC))
    source = DemoSource("demo", DemoOptions(count=count), context)
    started, cpu = time.perf_counter(), time.process_time()
    size = 0
    for doc in source.fetch(None):
        assert isinstance(doc, SourceDocument) and isinstance(doc.content, bytes)
        size += len(doc.content)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"demo: {count} documents in {elapsed:.2f}s wall ({count / elapsed:,.0f} docs/s), "
        f"{cpu:.2f}s CPU ({count / cpu:,.0f} docs/s); "
        f"{size / count:,.0f} bytes of PDF on average"
    )


def bench_folder(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "inbox"
        per_folder = 1000
        started = time.perf_counter()
        for i in range(files):
            folder = root / f"{i // per_folder:04d}"
            if i % per_folder == 0:
                folder.mkdir(parents=True)
            (folder / f"scan-{i:07d}.pdf").write_bytes(b"%PDF-1.4\n")
            if i % 10 == 0:
                (folder / f"scan-{i:07d}.json").write_text(f'{{"number": "RE-{i}"}}')
        print(f"folder: created {files} files in {time.perf_counter() - started:.1f}s")
        context = ConnectorContext("inbox", Path(tmp))
        source = FolderSource("inbox", FolderSourceOptions(path=root, company="acme"), context)
        for label in ("first", "second"):
            started, cpu = time.perf_counter(), time.process_time()
            found = sum(1 for _ in source.fetch(None))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            print(
                f"folder: {label} walk: {found} documents in {elapsed:.2f}s wall "
                f"({found / elapsed:,.0f} files/s), {cpu:.2f}s CPU"
            )
        flat = Path(tmp) / "flat"
        flat.mkdir()
        for i in range(min(files, 100_000)):
            os.close(os.open(flat / f"{i:07d}.pdf", os.O_CREAT | os.O_WRONLY))
        source = FolderSource("flat", FolderSourceOptions(path=flat), context)
        started, cpu = time.perf_counter(), time.process_time()
        found = sum(1 for _ in source.fetch(None))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(
            f"folder: one flat folder: {found} files in {elapsed:.2f}s wall "
            f"({found / elapsed:,.0f} files/s), {cpu:.2f}s CPU"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    bench_demo(args.count)
    bench_folder(args.files)


if __name__ == "__main__":
    main()
