"""Documents per second with 1, 2 and 3 worker nodes (``executor: procrastinate``).

    python bench/nodes.py [--count 1000] [--nodes 1,2,3] [--folders 2] [--webdav 2]

One PostgreSQL schema (127.0.0.1:5432, ``INVOICESYNC_TEST_POSTGRES_URL``
overrides), the demo source imported once by ``invoicesync fetch``, blobs in a
shared folder. Each round empties the ledger and the targets, starts N
``invoicesync worker`` processes (``daemon.workers: 1`` each, so a node runs
one account at a time), queues one export job per account and measures from
the deferral until the ledger holds every export. Accounts: ``--folders``
folder targets and ``--webdav`` WebDAV targets (WsgiDAV on cheroot, its own
process, on loopback). Prints documents exported per second per round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from invoicesync.daemon.scheduler.queue import JobQueue
from invoicesync.daemon.storage.database import create_engine
from targets import PASSWORD, USER, webdav_server

BASE_URL = os.environ.get(
    "INVOICESYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CLI = [sys.executable, "-m", "invoicesync.daemon.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--folders", type=int, default=2)
    parser.add_argument("--webdav", type=int, default=2)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    url = f"{BASE_URL}?options={quote(f'-csearch_path={schema}')}"
    admin = sa.create_engine(BASE_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    tmp = Path(tempfile.mkdtemp(prefix="invoicesync-bench-nodes-"))
    try:
        with webdav_server(tmp / "dav") as dav_url:
            run(args, url, tmp, dav_url)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, url: str, tmp: Path, dav_url: str) -> None:
    accounts = [f"folder{i}" for i in range(args.folders)]
    accounts += [f"dav{i}" for i in range(args.webdav)]
    exports = []
    for name in accounts:
        if name.startswith("folder"):
            exports.append(
                {"id": name, "type": "folder", "options": {"path": str(tmp / "out" / name)}}
            )
        else:
            exports.append(
                {
                    "id": name,
                    "type": "webdav",
                    "options": {
                        "url": dav_url,
                        "path": name,
                        "username": USER,
                        "password": "env:BENCH_DAV_PASSWORD",
                    },
                }
            )
    config = {
        "version": 1,
        "timezone": "UTC",
        "state": "./state",
        "database": url,
        "blobs": str(tmp / "blobs"),
        "executor": "procrastinate",
        "log": {"format": "json", "level": "warning"},
        "daemon": {"workers": 1, "jitter": "0s", "heartbeat": "2s", "grace_period": "5s"},
        "sources": [{"id": "demo", "type": "demo", "options": {"count": args.count}}],
        "exports": exports,
    }
    env = {**os.environ, "BENCH_DAV_PASSWORD": PASSWORD, "INVOICESYNC_PLUGINS": ""}
    path = tmp / "invoicesync.yaml"
    path.write_text(json.dumps(config))
    subprocess.run([*CLI, "--config", str(path), "fetch"], env=env, check=True, capture_output=True)
    engine = create_engine(url)
    print(
        f"{args.count} documents x {len(accounts)} accounts "
        f"({args.folders} folder, {args.webdav} WebDAV), one job per account"
    )
    for n in [int(x) for x in args.nodes.split(",")]:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM ledger"))
            conn.execute(sa.text("DELETE FROM runs"))
        shutil.rmtree(tmp / "out", ignore_errors=True)
        shutil.rmtree(tmp / "dav", ignore_errors=True)
        (tmp / "dav").mkdir()
        logs = [tmp / f"worker-{n}-{i}.log" for i in range(n)]
        workers = []
        for log in logs:
            with log.open("w") as err:  # a file: a full pipe would stall the worker
                workers.append(
                    subprocess.Popen(
                        [*CLI, "--config", str(path), "--log-level", "info", "worker"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                )
        try:
            for log in logs:  # wait until each takes jobs
                while '"queue.worker_started"' not in log.read_text():
                    time.sleep(0.1)
            queue = JobQueue(engine)
            started = time.monotonic()
            for name in accounts:
                queue.defer("export", name, "bench")
            queue.close()
            total = args.count * len(accounts)
            while True:
                with engine.connect() as conn:
                    done = conn.execute(
                        sa.text("SELECT count(*) FROM ledger WHERE state = 'exported'")
                    ).scalar_one()
                if done >= total:
                    break
                time.sleep(0.1)
            elapsed = time.monotonic() - started
            rate = total / elapsed
            print(f"{n} worker node(s): {total} exports in {elapsed:.1f} s = {rate:.0f} docs/s")
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(60)
    engine.dispose()


if __name__ == "__main__":
    main()
