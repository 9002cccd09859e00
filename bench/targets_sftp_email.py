"""Export rate of the sftp and email targets on loopback.

1,000 documents of 50 KB each, exported by calling ``Target.export`` directly
(no catalog, no engine) to a real OpenSSH sshd and to an aiosmtpd server, both
started on 127.0.0.1 by the test fixtures' helpers. Needs root (sshd) and the
``test`` extra. Run::

    .venv/bin/python bench/targets_sftp_email.py [--count 1000] [--size 51200]

The SMTP server runs in a separate process, so that it does not share the
client's interpreter lock and the rate measures the client.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.smtp_server import make_certificate, start_smtp  # noqa: E402
from fixtures.sshd import start_sshd  # noqa: E402
from fixtures.target_items import context, make_item  # noqa: E402
from invoicesync.connectors_builtin.email import EmailTarget  # noqa: E402
from invoicesync.connectors_builtin.sftp import SftpTarget  # noqa: E402


def _items(folder: Path, count: int, size: int) -> list[Any]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        make_item(
            folder,
            os.urandom(size),
            remote_name=f"bench/{n % 10}/doc-{n:05d}.pdf",
            external_id=f"bench-{n}",
        )
        for n in range(count)
    ]


def bench_sftp(work: Path, items: list[Any]) -> dict[str, Any]:
    server = start_sshd(work / "sshd")
    try:
        options = SftpTarget.Options.model_validate(
            {
                "host": server.host,
                "port": server.port,
                "username": server.key_user,
                "private_key": str(server.user_key),
                "known_hosts": str(server.known_hosts(work)),
                "path": str(work / "sftp-remote"),
            }
        )
        target = SftpTarget("bench-sftp", options, context(work / "sftp-state"))
        target.check()
        start = time.perf_counter()
        for item in items:
            target.export(item)
        elapsed = time.perf_counter() - start
        target.close()
    finally:
        server.stop()
    remote = work / "sftp-remote"
    ok = all((remote / it.remote_name).read_bytes() == it.content_path.read_bytes() for it in items)
    files = sum(1 for p in remote.rglob("*") if p.is_file())
    return {
        "target": "sftp",
        "seconds": elapsed,
        "docs_per_s": len(items) / elapsed,
        "verified": ok and files == len(items),
    }


def _smtp_process(cert: str, key: str, port_q: Any, stop_q: Any, result_q: Any) -> None:
    server = start_smtp("starttls", Path(cert), Path(key))
    port_q.put(server.port)
    stop_q.get()
    digests = []
    for m in server.handler.messages:
        msg = email.message_from_bytes(m.content, policy=email.policy.default)
        for part in msg.iter_attachments():  # type: ignore[attr-defined]
            digests.append(hashlib.sha256(part.get_payload(decode=True)).hexdigest())
    server.stop()
    result_q.put(digests)


def bench_email(work: Path, items: list[Any]) -> dict[str, Any]:
    cert, key = make_certificate(work)
    ctx = multiprocessing.get_context("fork")
    port_q, stop_q, result_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_smtp_process, args=(str(cert), str(key), port_q, stop_q, result_q))
    proc.start()
    try:
        port = port_q.get(timeout=30)
        options = EmailTarget.Options.model_validate(
            {
                "host": "127.0.0.1",
                "port": port,
                "security": "starttls",
                "username": "mailer",
                "password": "s3cret-smtp-pass",
                "from": "sync@example.test",
                "to": ["inbox@example.test"],
                "ca_file": str(cert),
                "helo_name": "bench.test",
            }
        )
        target = EmailTarget("bench-email", options, context(work / "email-state"))
        target.check()
        start = time.perf_counter()
        for item in items:
            target.export(item)
        elapsed = time.perf_counter() - start
        target.close()
        stop_q.put(True)
        digests = result_q.get(timeout=120)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
    expected = sorted(it.document.sha256 for it in items)
    return {
        "target": "email",
        "seconds": elapsed,
        "docs_per_s": len(items) / elapsed,
        "verified": sorted(digests) == expected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=50 * 1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="invoicesync-bench-") as tmp:
        work = Path(tmp)
        items = _items(work / "content", args.count, args.size)
        results = [bench_sftp(work, items), bench_email(work, items)]
    for r in results:
        r.update(count=args.count, size=args.size)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
