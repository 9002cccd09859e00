"""Export rate of the network targets on loopback: N documents of S bytes each.

    python bench/targets.py [--count 1000] [--size 51200] [--only webdav,s3,rclone-rcd-local]

Starts each server as its own process (WsgiDAV on cheroot, moto's standalone
S3 server), then calls ``Target.export`` directly and sequentially, one fresh
document after another, as the engine does for one account. Prints one line
per target with documents per second. Needs the ``test`` extra (wsgidav,
cheroot, moto, boto3) and the ``rclone`` program. ``rclone-*`` runs rclone
twice per document; ``rclone-rcd-*`` uses ``persistent: true``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from invoicesync.connectors_builtin.rclone import RcloneOptions, RcloneTarget
from invoicesync.connectors_builtin.s3 import S3Options, S3Target
from invoicesync.connectors_builtin.webdav import WebDAVOptions, WebDAVTarget
from invoicesync.plugins import ConnectorContext, Document, ExportItem, Target

USER, PASSWORD = "bench", "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"server exited early with code {proc.returncode}:\n{err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def process(args: list[str], port: int) -> Iterator[None]:
    # The server's output goes to a file: an unread pipe fills up (moto logs
    # every request) and then blocks the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            wait_port(port, proc, log)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def webdav_server(root: Path) -> Iterator[str]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    script = textwrap.dedent(
        f"""
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp
        app = WsgiDAVApp({{
            "host": "127.0.0.1", "port": {port},
            "provider_mapping": {{"/": {str(root)!r}}},
            "simple_dc": {{"user_mapping": {{"*": {{{USER!r}: {{"password": {PASSWORD!r}}}}}}}}},
            "http_authenticator": {{"accept_basic": True, "accept_digest": False,
                                    "default_to_digest": False}},
            "property_manager": True, "verbose": 0, "logging": {{"enable": False}},
            "dir_browser": {{"enable": False}},
        }})
        wsgi.Server(("127.0.0.1", {port}), app, numthreads=4).safe_start()
        """
    )
    with process([sys.executable, "-c", script], port):
        yield f"http://127.0.0.1:{port}/"


@contextmanager
def s3_server() -> Iterator[str]:
    port = free_port()
    moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    with process([moto, "-H", "127.0.0.1", "-p", str(port)], port):
        url = f"http://127.0.0.1:{port}"
        import boto3

        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket="bench")
        yield url


def items(workdir: Path, count: int, size: int) -> list[ExportItem]:
    out = []
    for i in range(count):
        content = (f"%PDF-1.4 bench document {i}\n".encode() + os.urandom(size))[:size]
        path = workdir / f"doc-{i}.pdf"
        path.write_bytes(content)
        doc = Document.model_validate(
            {
                "id": f"bench/{i}",
                "source": "bench",
                "external_id": str(i),
                "company": "acme",
                "type": "incoming_invoice",
                "number": f"R-{i:05d}",
                "document_date": date(2024, 1 + i % 12, 1 + i % 28),
                "gross_amount": Decimal("119.00"),
                "currency": "EUR",
                "import_date": datetime(2024, 6, 1, tzinfo=UTC),
                "filename": f"doc-{i}.pdf",
                "media_type": "application/pdf",
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
        )
        # 12 month folders, like the default template's year/month layout.
        name = f"acme/2024/{doc.document_date:%m}/R-{i:05d}.pdf"
        out.append(ExportItem(doc, name, path))
    return out


def measure(label: str, target: Target[Any], batch: list[ExportItem]) -> float:
    target.check()
    start = time.perf_counter()
    for item in batch:
        target.export(item)
    elapsed = time.perf_counter() - start
    target.close()
    rate = len(batch) / elapsed
    print(f"{label:<16} {len(batch):>6} docs  {elapsed:8.1f} s  {rate:8.1f} docs/s", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=50 * 1024)
    parser.add_argument(
        "--only",
        default="webdav,s3,rclone-local,rclone-webdav",
        help="comma-separated: webdav, s3, rclone-local, rclone-webdav",
    )
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="invoicesync-bench-") as tmp:
        work = Path(tmp)
        (work / "items").mkdir()
        batch = items(work / "items", args.count, args.size)
        ctx = ConnectorContext("bench", work / "state")
        print(f"{args.count} documents of {args.size} bytes, sequential Target.export on loopback")
        runs: list[tuple[str, Callable[[], None]]] = []

        def run_webdav() -> None:
            with webdav_server(work / "dav") as url:
                opts = WebDAVOptions(url=url, path="bench", username=USER, password=PASSWORD)
                measure("webdav", WebDAVTarget("w", opts, ctx), batch)

        def run_s3() -> None:
            with s3_server() as url:
                opts = S3Options.model_validate(
                    {
                        "endpoint_url": url,
                        "bucket": "bench",
                        "prefix": "invoices",
                        "access_key_id": "bench",
                        "secret_access_key": "bench",
                    }
                )
                measure("s3", S3Target("s", opts, ctx), batch)

        def run_rclone_local(persistent: bool) -> None:
            conf = work / "rclone.conf"
            conf.write_text("[loc]\ntype = local\n")
            where = work / f"rclone-local-{persistent}"
            opts = RcloneOptions.model_validate(
                {"remote": f"loc:{where}", "config": str(conf), "persistent": persistent}
            )
            label = "rclone rcd local" if persistent else "rclone local"
            measure(label, RcloneTarget("r", opts, ctx), batch)

        def run_rclone_webdav(persistent: bool) -> None:
            with webdav_server(work / f"dav-{persistent}") as url:
                obscured = subprocess.run(
                    ["rclone", "obscure", PASSWORD], capture_output=True, text=True, check=True
                ).stdout.strip()
                conf = work / "rclone-dav.conf"
                conf.write_text(
                    f"[dav]\ntype = webdav\nurl = {url}\nvendor = other\n"
                    f"user = {USER}\npass = {obscured}\n"
                )
                opts = RcloneOptions.model_validate(
                    {"remote": "dav:bench", "config": str(conf), "persistent": persistent}
                )
                label = "rclone rcd webdav" if persistent else "rclone webdav"
                measure(label, RcloneTarget("r", opts, ctx), batch)

        for label, fn in (
            ("webdav", run_webdav),
            ("s3", run_s3),
            ("rclone-local", lambda: run_rclone_local(False)),
            ("rclone-webdav", lambda: run_rclone_webdav(False)),
            ("rclone-rcd-local", lambda: run_rclone_local(True)),
            ("rclone-rcd-webdav", lambda: run_rclone_webdav(True)),
        ):
            if label in wanted:
                runs.append((label, fn))
        for _, fn in runs:
            fn()


if __name__ == "__main__":
    main()
