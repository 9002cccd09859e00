"""Import rate of the imap source from a real Dovecot: N mails, one PDF each.

    .venv/bin/python bench/imap_import.py [--mails 1000]

Starts the same Dovecot the tests use (tests/fixtures/dovecot.py), appends
N mails that each carry one small, real PDF invoice (made by the demo
portal's PDF writer, about 1.5 KB), then measures two things:

* ``connector``: a full ``ImapSource.fetch`` from an empty cursor, every
  document's bytes consumed, nothing stored -- the speed of IMAP, MIME
  parsing and the source itself;
* ``engine``: ``invoicesync fetch`` through the CLI into an empty catalog
  (SQLite, content-addressed blobs, one transaction per document), timed by
  the ``duration_s`` of its ``import.finished`` event and, separately, by
  the wall clock of the whole process (start-up included).

Prints one JSON object with the rates in documents per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.dovecot import make_mail, running_dovecot  # noqa: E402
from invoicesync.connectors_builtin.demo.pdf import PdfLine, render_pdf  # noqa: E402
from invoicesync.connectors_builtin.imap.source import ImapOptions, ImapSource  # noqa: E402
from invoicesync.plugins import ConnectorContext, SourceDocument  # noqa: E402


def invoice_pdf(i: int) -> bytes:
    lines = [
        PdfLine(50, 780, "ACME Supplies GmbH", 16, True),
        PdfLine(50, 740, f"Invoice R-{i:05d}"),
        PdfLine(50, 720, f"Date 2026-03-{i % 28 + 1:02d}"),
        PdfLine(50, 680, f"Total EUR {i % 500 + 10}.90", 12, True),
    ]
    return render_pdf(lines, title=f"Invoice R-{i:05d}", day=date(2026, 3, 1), rules=[700])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    args = parser.parse_args()
    n = args.mails

    with running_dovecot() as server, tempfile.TemporaryDirectory() as tmp:
        box = server.add_user()
        conn = box.connect()
        started = time.monotonic()
        pdf_sizes = []
        for i in range(n):
            content = invoice_pdf(i)
            pdf_sizes.append(len(content))
            mail = make_mail(
                f"Invoice R-{i:05d}",
                attachments=[(f"invoice-{i:05d}.pdf", "application/pdf", content)],
            )
            box.append(mail, conn=conn)
        conn.logout()
        seed_s = time.monotonic() - started

        options = ImapOptions.model_validate(
            {
                "host": server.host,
                "port": server.imaps_port,
                "username": box.username,
                "password": box.password,
                "ca_file": str(server.ca_file),
            }
        )
        source = ImapSource(
            "bench", options, ConnectorContext(id="bench", state_dir=Path(tmp) / "state")
        )
        started = time.monotonic()
        count = 0
        gen = source.fetch(None)
        try:
            while True:
                item = next(gen)
                assert isinstance(item, SourceDocument)
                content = item.content
                data = content if isinstance(content, bytes) else content.read_bytes()
                assert data.startswith(b"%PDF")
                count += 1
        except StopIteration:
            pass
        connector_s = time.monotonic() - started
        assert count == n, f"fetched {count} of {n}"

        config = Path(tmp) / "invoicesync.yaml"
        config.write_text(
            f"""\
version: 1
state: ./state-engine
sources:
  - id: mail
    type: imap
    options:
      host: {server.host}
      port: {server.imaps_port}
      username: {box.username}
      password: env:BENCH_IMAP_PASSWORD
      ca_file: {server.ca_file}
exports: []
""",
            encoding="utf-8",
        )
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "invoicesync.daemon.cli", "--config", str(config),
             "--log-format", "json", "fetch"],
            capture_output=True,
            text=True,
            env={**os.environ, "BENCH_IMAP_PASSWORD": box.password},
            check=False,
        )  # fmt: skip
        wall_s = time.monotonic() - started
        if run.returncode != 0:
            raise SystemExit(f"invoicesync fetch failed ({run.returncode}):\n{run.stderr}")
        finished = [
            json.loads(line)
            for line in run.stderr.splitlines()
            if line.startswith("{") and '"import.finished"' in line
        ]
        engine_s = finished[-1]["duration_s"] if finished else None
        imported = finished[-1].get("new") if finished else None

    result = {
        "mails": n,
        "pdf_bytes_avg": round(sum(pdf_sizes) / len(pdf_sizes)),
        "seed_s": round(seed_s, 2),
        "connector_s": round(connector_s, 2),
        "connector_docs_per_s": round(n / connector_s, 1),
        "engine_imported": imported,
        "engine_s": engine_s,
        "engine_docs_per_s": round(n / engine_s, 1) if engine_s else None,
        "engine_wall_s": round(wall_s, 2),
        "engine_wall_docs_per_s": round(n / wall_s, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
