"""The HTTP endpoint inside ``invoicesync run`` (a real uvicorn on loopback), and ``serve``.

Every wait polls the daemon's log or its endpoint with a bounded deadline;
every test ends with ``check_logs()`` (each line a documented event).
"""

from __future__ import annotations

import html
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fixtures.daemon_proc import (
    INVOICESYNC,
    DaemonProcess,
    run_cli,
)
from helpers import free_port

from .webtools import crawl, drop_document, get, metrics, sample, web_config

Start = Callable[..., DaemonProcess]


def exported_in_events(d: DaemonProcess, account: str) -> int:
    return sum(e["exported"] for e in d.named("export.finished") if e["account"] == account)


def test_metrics_counters_follow_the_exports_and_healthz_the_scheduler(
    tmp_path: Path, start_daemon: Start
) -> None:
    port = free_port()
    cfg = web_config(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    d = start_daemon(cfg)
    started = d.wait_event("daemon.started")
    assert started["http"] == f"127.0.0.1:{port}"
    status, _headers, body = get(base + "/healthz")
    assert (status, body) == (200, "ok\n")

    def exported_reaches(total: int) -> Callable[[Any], Any]:
        def check(_events: Any) -> Any:
            exported = sample(
                metrics(get(base + "/metrics")[2]),
                "invoicesync_documents_exported_total",
                account="everything",
            )
            return exported == total and exported_in_events(d, "everything") == total

        return check

    # all 24 demo documents, then the one dropped into the watched inbox
    d.wait_for(exported_reaches(24), what="24 exports counted, as the events say")
    drop_document(tmp_path / "inbox", "LATE-1")
    d.wait_for(exported_reaches(25), what="the counter to move with the new document")
    parsed = metrics(get(base + "/metrics")[2])
    runs = [e for e in d.named("export.finished") if e["account"] == "everything"]
    assert sample(
        parsed, "invoicesync_export_run_duration_seconds_count", account="everything"
    ) == len(runs)
    assert sample(parsed, "invoicesync_scheduler_running") == 1
    assert sample(parsed, "invoicesync_info", version="0.1.0", mode="daemon") == 1
    exported_now = sample(
        parsed, "invoicesync_account_documents", account="everything", state="exported"
    )
    assert exported_now == 25
    imported = sum(e["new"] + e["new_revision"] for e in d.named("import.finished"))
    assert (
        sum(
            sample(parsed, "invoicesync_documents_imported_total", source=s) or 0
            for s in ("demo", "inbox")
        )
        == imported
    )
    # the runs page shows the run's events, kept in memory by the daemon
    last = runs[-1]
    page = get(base + "/runs")[2]
    assert f'id="run-{last["run_id"]}"' in page
    assert "document.exported" in page

    code, _took = d.stop()
    assert code == 0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the endpoint still listens after exit"
    d.check_logs()


def test_no_secret_in_any_response(tmp_path: Path, start_daemon: Start) -> None:
    """Crawl every page of a daemon whose connectors and endpoint have secrets."""
    port = free_port()
    token = "tok-Sup3rSecret-0xA1"
    dav_password = "dav-PaSSw0rd-%/&-9"
    closed = free_port()  # nobody listens: the webdav export fails, its error is on the pages
    exports = [
        {
            "id": "archive",
            "type": "folder",
            "schedule": {"after_import": True},
            "options": {"path": "./archive"},
        },
        {
            "id": "cloud",
            "type": "webdav",
            "schedule": {"after_import": True},
            "retry": {"attempts": 1, "initial": "0s", "max": "0s"},
            "options": {
                "url": f"http://127.0.0.1:{closed}/dav/",
                "username": "bob",
                "password": "env:DAV_PASSWORD",
            },
        },
    ]
    cfg = web_config(
        tmp_path, port, http={"auth": {"bearer": "env:WEB_TOKEN"}}, exports=exports, demo_count=8
    )
    # a user typed the secret into a note: the page masks it like the log does
    drop_document(tmp_path / "inbox", "LEAK", note=f"password is {dav_password}")
    d = start_daemon(cfg, WEB_TOKEN=token, DAV_PASSWORD=dav_password)
    d.wait_event("daemon.started")
    d.wait_event("export.finished", account="cloud")
    d.wait_for(
        lambda ev: {"demo", "inbox"} <= {e["source"] for e in ev if e["event"] == "import.finished"}
    )
    base = f"http://127.0.0.1:{port}"
    assert get(base + "/")[0] == 401
    assert get(base + "/metrics")[0] == 401
    assert get(base + "/", {"Authorization": "Bearer wrong"})[0] == 401
    assert get(base + "/healthz")[0] == 200
    pages = crawl(base, {"Authorization": f"Bearer {token}"})
    documents = [u for u in pages if "/documents/" in u]
    assert len(documents) >= 9 and any(u.endswith("/metrics") for u in pages)
    assert any("/accounts/cloud" in u for u in pages) and any("/runs" in u for u in pages)
    secrets = {token, dav_password, html.escape(dav_password), quote(dav_password)}
    secrets |= {quote(dav_password, safe=""), html.escape(quote(dav_password))}
    for url, (status, headers, body) in pages.items():
        assert status == 200, (url, status)
        for secret in secrets:
            assert secret not in body, f"{url} shows a secret"
            assert all(secret not in v for v in headers.values()), f"{url} headers"
    note_page = next(b for url, (_s, _h, b) in pages.items() if "/documents/inbox/LEAK" in url)
    assert "password is ***" in note_page
    code, _took = d.stop()
    assert code == 0
    for line in d.lines:
        assert token not in line and dav_password not in line
    d.check_logs()


def test_stale_and_recovered_with_the_clock_under_control(
    tmp_path: Path, start_daemon: Start, daemon_env: dict[str, str]
) -> None:
    """A day without a successful run (``--now`` a day on) is stale until the next run."""
    port = free_port()
    sources = [
        {"id": "demo", "type": "demo", "schedule": {"every": "1h"}, "options": {"count": 3}},
        {
            "id": "quiet",
            "type": "demo",
            "schedule": {"cron": "0 3 1 1 *"},  # once a year: no run while the test lasts
            "stale_after": "2h",
            "options": {"count": 2},
        },
    ]
    exports = [
        {
            "id": "archive",
            "type": "folder",
            "schedule": {"after_import": True},
            "stale_after": "2h",
            "options": {"path": "./archive"},
        }
    ]
    cfg = web_config(tmp_path, port, sources=sources, exports=exports)
    first = run_cli(daemon_env, cfg, "sync")
    assert first.returncode == 0, first.stderr
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    shown = run_cli(daemon_env, cfg, "--now", later, "status", "--sources", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {r["source"]: r["stale"] for r in json.loads(shown.stdout)} == {
        "demo": True,
        "quiet": True,
    }
    now_shown = run_cli(daemon_env, cfg, "status", "--sources", "--json").stdout
    assert [r["stale"] for r in json.loads(now_shown)] == [False, False]

    d = start_daemon(cfg, "--now", later)
    stale = d.wait_event("source.stale", source="demo")
    assert stale["level"] == "warning" and stale["stale_after_s"] == 3 * 3600
    d.wait_event("source.stale", source="quiet")
    d.wait_event("account.stale", account="archive")
    recovered = d.wait_event("source.recovered", source="demo")
    assert recovered["stale_for_s"] >= 0
    d.wait_event("account.recovered", account="archive")
    parsed = metrics(get(f"http://127.0.0.1:{port}/metrics")[2])
    assert sample(parsed, "invoicesync_source_stale", source="quiet") == 1
    assert sample(parsed, "invoicesync_source_stale", source="demo") == 0
    page = get(f"http://127.0.0.1:{port}/")[2]
    assert 'id="source-quiet"' in page
    quiet_row = page.split('id="source-quiet"')[1].split("</tr>")[0]
    assert "stale" in quiet_row and "fresh" not in quiet_row
    code, _ = d.stop()
    assert code == 0
    # once per episode: no repeats
    assert len([e for e in d.named("source.stale") if e["source"] == "quiet"]) == 1
    assert not [e for e in d.named("source.recovered") if e["source"] == "quiet"]
    d.check_logs()


def test_a_port_in_use_is_a_clear_start_error(tmp_path: Path, start_daemon: Start) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = web_config(tmp_path, port)
        d = start_daemon(cfg)
        assert d.proc.wait(60) == 2
    d.kill()
    problem = d.wait_event("config.invalid")["problems"][0]
    assert f"daemon.http.listen: cannot listen on 127.0.0.1:{port}" in problem
    assert not d.named("daemon.started")
    d.check_logs()


def test_serve_shows_a_state_folder_without_scheduler(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    port = free_port()
    cfg = web_config(tmp_path, free_port(), demo_count=5)
    assert run_cli(daemon_env, cfg, "sync").returncode == 0
    proc = subprocess.Popen(
        [*INVOICESYNC, "--config", str(cfg), "serve", "--listen", f"127.0.0.1:{port}"],
        env=daemon_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"serving http://127.0.0.1:{port}/ (Ctrl-C stops)"
        status, _h, body = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and 'id="account-archive"' in body
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 503
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert proc.stderr is not None
    events = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["http.started", "http.stopped"]


def test_version_does_not_import_the_web_stack() -> None:
    code = (
        "import sys\n"
        "from invoicesync.daemon.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "web = ('starlette', 'jinja2', 'uvicorn', 'prometheus_client')\n"
        "heavy = [m for m in web if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_healthz_turns_503_when_the_daemon_stops(tmp_path: Path, start_daemon: Start) -> None:
    """SIGTERM while an export is still writing: /healthz says 503 until the exit."""
    port = free_port()
    sources = [{"id": "demo", "type": "demo", "schedule": {"every": "1h"}, "options": {"count": 1}}]
    exports = [
        {
            "id": "slow",
            "type": "slow",
            "schedule": {"after_import": True},
            "filename": "{filename}.{ext}",  # flat: the test target makes no folders
            # about 18 chunks of 100 bytes, 0.5 s apart; it ignores the stop flag
            "options": {"path": "./slow", "chunk": 100, "delay": 0.5, "ignore_stop": True},
        }
    ]
    cfg = web_config(tmp_path, port, sources=sources, exports=exports)
    data = json.loads(cfg.read_text())
    data["daemon"]["grace_period"] = "60s"  # the write ends well within it
    cfg.write_text(json.dumps(data))
    d = start_daemon(cfg)
    d.wait_event("daemon.started")
    base = f"http://127.0.0.1:{port}"
    d.wait_for(lambda _ev: (tmp_path / "slow" / ".writing").exists(), what="the slow write")
    assert get(base + "/healthz")[0] == 200
    d.signal(signal.SIGTERM)
    d.wait_event("daemon.stopping")
    # the export still writes (it ignores the stop flag): the endpoint answers, unhealthy
    answer = d.wait_for(
        lambda _ev: (a := get(base + "/healthz"))[0] == 503 and a, what="/healthz 503"
    )
    assert answer[2] == "the scheduler is not running\n"
    assert d.proc.wait(60) == 0
    stopped = d.wait_event("daemon.stopped")
    assert stopped["clean"] is True
    assert d.named("document.exported"), "the slow export finished within the grace period"
    d.check_logs()
