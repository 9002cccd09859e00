"""Idle cost of ``invoicesync run`` with many sources and accounts configured.

Starts the daemon with N ``folder`` sources (empty folders) and N ``folder``
export accounts, all ``every: 1h``, waits until the start-up runs are done,
then samples ``/proc/PID/stat`` (CPU time) and ``/proc/PID/status`` (VmRSS)
for the measuring period. Usage::

    python bench/daemon_idle.py [--count 100] [--seconds 60] [--http]

``--http`` turns on the status page (``daemon.http``) and, while measuring,
scrapes ``/metrics`` every ``--scrape`` seconds (default 15, Prometheus' usual
interval; 0: no scrapes) to show what the endpoint costs.

Prints one JSON object with the results (Linux only).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--http", action="store_true", help="with daemon.http on")
    parser.add_argument("--scrape", type=float, default=15, help="seconds between scrapes")
    args = parser.parse_args()
    n = args.count
    with tempfile.TemporaryDirectory(prefix="invoicesync-idle-") as tmp:
        root = Path(tmp)
        config = {
            "version": 1,
            "timezone": "UTC",
            "state": "./state",
            "log": {"format": "json"},
            "daemon": {"workers": 4, "jitter": "5s"},
            "sources": [
                {
                    "id": f"src-{i:03}",
                    "type": "folder",
                    "schedule": {"every": "1h"},
                    "options": {"path": f"./in/{i:03}"},
                }
                for i in range(n)
            ],
            "exports": [
                {
                    "id": f"acct-{i:03}",
                    "type": "folder",
                    "schedule": {"every": "1h"},
                    "options": {"path": f"./out/{i:03}"},
                }
                for i in range(n)
            ],
        }
        for i in range(n):
            (root / "in" / f"{i:03}").mkdir(parents=True)
        port = None
        if args.http:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            config["daemon"]["http"] = {"listen": f"127.0.0.1:{port}"}
        cfg = root / "invoicesync.yaml"
        cfg.write_text(json.dumps(config))
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoicesync.daemon.cli", "--config", str(cfg), "run"],
            cwd=root,
            stderr=subprocess.PIPE,
            text=True,
        )
        finished = {"import.finished": 0, "export.finished": 0}
        ready = threading.Event()
        startup_done = threading.Event()
        lines = 0

        def read() -> None:
            nonlocal lines
            assert proc.stderr is not None
            for line in proc.stderr:
                lines += 1
                event = json.loads(line).get("event")
                if event == "daemon.started":
                    ready.set()
                if event in finished:
                    finished[event] += 1
                    if min(finished.values()) >= n:
                        startup_done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if not ready.wait(120):
                raise SystemExit("the daemon did not start")
            ready_s = time.monotonic() - started
            if not startup_done.wait(120):
                raise SystemExit(f"start-up runs did not finish: {finished}")
            startup_s = time.monotonic() - started
            time.sleep(2)  # let the last runs' threads settle before measuring
            lines_before = lines
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            rss_samples = []
            scrapes = 0
            next_scrape = t0
            while time.monotonic() - t0 < args.seconds:
                rss_samples.append(status_kib(proc.pid, "VmRSS"))
                if port is not None and args.scrape > 0 and time.monotonic() >= next_scrape:
                    url = f"http://127.0.0.1:{port}/metrics"
                    with urllib.request.urlopen(url, timeout=30) as response:
                        response.read()
                    scrapes += 1
                    next_scrape += args.scrape
                time.sleep(1)
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            result = {
                "sources": n,
                "accounts": n,
                "ready_after_s": round(ready_s, 1),
                "startup_runs_done_after_s": round(startup_s, 1),
                "measured_s": round(t1 - t0, 1),
                "idle_cpu_seconds": round(cpu1 - cpu0, 3),
                "idle_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
                "rss_mib_avg": round(sum(rss_samples) / len(rss_samples) / 1024, 1),
                "rss_mib_max": round(max(rss_samples) / 1024, 1),
                "threads": status_kib(proc.pid, "Threads"),
                "log_lines_while_idle": lines - lines_before,
                "http": port is not None,
                "metrics_scrapes": scrapes,
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        result["exit_code"] = code
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
